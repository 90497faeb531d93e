package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writePair(t *testing.T, dir, base string, serial int64, names ...string) Pair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	p := Pair{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	os.WriteFile(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(p.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return p
}

func serial(t *testing.T, s *Store, name string) int64 {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

func TestSNIAndReload(t *testing.T) {
	dir := t.TempDir()
	a := writePair(t, dir, "a", 1, "example.com", "www.example.com")
	b := writePair(t, dir, "b", 2, "*.shop.test")
	c := writePair(t, dir, "c", 3, "api.shop.test")
	s, err := New([]Pair{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"example.com": 1, "WWW.Example.com.": 1, "x.shop.test": 2, "api.shop.test": 3,
		"a.b.shop.test": 1, "": 1, "unknown.org": 1,
	} {
		if got := serial(t, s, name); got != want {
			t.Errorf("%q: certificate %d, want %d", name, got, want)
		}
	}
	writePair(t, dir, "a", 10, "example.com")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(t, s, "example.com"); got != 10 {
		t.Errorf("after reload: %d, want 10", got)
	}
	os.WriteFile(b.Key, []byte("broken"), 0o600)
	if err := s.Reload(); err == nil {
		t.Fatal("broken key reloaded")
	}
	if got := serial(t, s, "x.shop.test"); got != 2 {
		t.Errorf("after a failed reload: %d, want the old 2", got)
	}
	if _, err := New(nil); err == nil {
		t.Error("no pairs accepted")
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tls-0.crt"), nil, 0o600)
	for _, tc := range []struct{ name, cred, want string }{
		{"tls-0.crt", dir, filepath.Join(dir, "tls-0.crt")},
		{"tls-0.crt", "", "tls-0.crt"},
		{"other.crt", dir, "other.crt"},
		{"/etc/x.crt", dir, "/etc/x.crt"},
		{"sub/tls-0.crt", dir, "sub/tls-0.crt"},
	} {
		if got := Resolve(tc.name, tc.cred); got != tc.want {
			t.Errorf("Resolve(%q, %q) = %q, want %q", tc.name, tc.cred, got, tc.want)
		}
	}
}
