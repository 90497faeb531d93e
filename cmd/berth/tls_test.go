package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// writeNamedCert writes a self-signed certificate for dnsName (and
// 127.0.0.1) to dir/base.crt and its key to dir/base.key.
func writeNamedCert(t *testing.T, dir, base, dnsName string, serial int64) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: dnsName},
		DNSNames:              []string{dnsName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	// Written beside and renamed, as certbot's deploy does: a reload never
	// reads half a file.
	for _, f := range []struct {
		path string
		b    *pem.Block
	}{{crt, &pem.Block{Type: "CERTIFICATE", Bytes: der}}, {key, &pem.Block{Type: "PRIVATE KEY", Bytes: kder}}} {
		if err := os.WriteFile(f.path+".new", pem.EncodeToMemory(f.b), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
	return crt, key
}

// curlTLS runs curl against berth's TLS port as host, trusting only
// caFile; it returns curl's exit code, "HTTP_VERSION STATUS" and body.
func curlTLS(t *testing.T, port, host, caFile, path string, extra ...string) (int, string, string) {
	t.Helper()
	args := append([]string{"-sS", "--max-time", "10", "--cacert", caFile,
		"--resolve", host + ":" + port + ":127.0.0.1",
		"-w", "\n%{http_version} %{http_code}"}, extra...)
	args = append(args, "https://"+host+":"+port+path)
	out, err := exec.Command("curl", args...).Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return code, s, ""
	}
	return code, s[i+1:], s[:i]
}

// TestTLSHTTP2SNIReload drives berth's TLS listener with curl: HTTP/2
// and HTTP/1.1 by ALPN, the certificate chosen by SNI, and SIGHUP
// reloading the certificates while an open connection goes on.
func TestTLSHTTP2SNIReload(t *testing.T) {
	testenv.NeedCommand(t, "curl")
	certs := t.TempDir()
	aCrt, aKey := writeNamedCert(t, certs, "a", "localhost", 1)
	bCrt, _ := writeNamedCert(t, certs, "b", "other.test", 2)
	// The old certificate of localhost, kept to show it is no longer served.
	oldA, _ := os.ReadFile(aCrt)
	oldAPath := filepath.Join(t.TempDir(), "old-a.crt")
	os.WriteFile(oldAPath, oldA, 0o644)

	app := edgeApp(t, map[string]string{"public/hi.txt": "hi over tls"})
	// Second pair by credential name, as LoadCredential= gives it.
	t.Setenv("CREDENTIALS_DIRECTORY", certs)
	b := startBerthCmd(t, exec.Command(berthBin, "serve", app, "--workers", "1", "--listen", "127.0.0.1:0",
		"--tls-cert", aCrt, "--tls-key", aKey, "--tls-cert", "b.crt", "--tls-key", "b.key"))
	u, err := url.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	b.WaitFor(`echo app listening`, 20*time.Second)

	for _, tc := range []struct {
		name, flag, version string
	}{{"h2", "--http2", "2"}, {"http/1.1", "--http1.1", "1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			code, status, body := curlTLS(t, port, "localhost", aCrt, "/who", tc.flag)
			if code != 0 || status != tc.version+" 200" {
				t.Fatalf("curl exit %d, %q, body %q", code, status, body)
			}
			var seen struct{ URL, Xfproto, Host string }
			if err := json.Unmarshal([]byte(body), &seen); err != nil || seen.URL != "/who" || seen.Xfproto != "https" || seen.Host != "localhost:"+port {
				t.Fatalf("the app saw %+v (%v) from %q", seen, err, body)
			}
			code, status, body = curlTLS(t, port, "localhost", aCrt, "/hi.txt", tc.flag)
			if code != 0 || status != tc.version+" 200" || body != "hi over tls" {
				t.Fatalf("static over %s: exit %d, %q, %q", tc.name, code, status, body)
			}
			code, status, body = curlTLS(t, port, "localhost", aCrt, "/hi.txt", tc.flag, "-r", "3-6")
			if code != 0 || status != tc.version+" 206" || body != "over" {
				t.Fatalf("range over %s: exit %d, %q, %q", tc.name, code, status, body)
			}
		})
	}
	t.Run("SNI", func(t *testing.T) {
		if code, status, _ := curlTLS(t, port, "other.test", bCrt, "/", "--http2"); code != 0 || status != "2 200" {
			t.Fatalf("other.test with its certificate: exit %d %q", code, status)
		}
		if code, _, _ := curlTLS(t, port, "other.test", aCrt, "/"); code != 60 {
			t.Fatalf("other.test answered with localhost's certificate? curl exit %d, want 60 (peer certificate not trusted)", code)
		}
	})

	// A connection opened before the reload.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(oldA)
	kept, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: "localhost", RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	kr := bufio.NewReader(kept)
	ask := func() int {
		kept.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(kept, "GET /kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, err := http.ReadResponse(kr, nil)
		if err != nil {
			t.Fatalf("kept connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := ask(); got != 200 {
		t.Fatalf("kept connection: %d", got)
	}

	t.Run("reload", func(t *testing.T) {
		newCrt, _ := writeNamedCert(t, certs, "a", "localhost", 3)
		b.Signal(syscall.SIGHUP)
		b.WaitFor(`msg="TLS certificates reloaded"`, 10*time.Second)
		if code, status, _ := curlTLS(t, port, "localhost", newCrt, "/", "--http2"); code != 0 || status != "2 200" {
			t.Fatalf("new certificate not served: exit %d %q", code, status)
		}
		if code, _, _ := curlTLS(t, port, "localhost", oldAPath, "/"); code != 60 {
			t.Fatalf("old certificate still served: curl exit %d", code)
		}
		if got := ask(); got != 200 {
			t.Fatalf("connection opened before the reload: %d", got)
		}
		// A broken file keeps the certificates in use.
		os.WriteFile(aKey, []byte("not a key"), 0o600)
		b.Signal(syscall.SIGHUP)
		b.WaitFor(`TLS certificates not reloaded`, 10*time.Second)
		if code, status, _ := curlTLS(t, port, "localhost", newCrt, "/"); code != 0 || status != "1.1 200" && status != "2 200" {
			t.Fatalf("after a failed reload: exit %d %q", code, status)
		}
	})
}
