package balancer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// TestHTTP2 serves the proxy over TLS with HTTP/2: bodies both ways
// (known and unknown length), trailers, HEAD, a response the worker cuts
// short (the stream is reset, not ended cleanly), and HTTP/1.1 on the
// same listener for a client that does not offer h2; then a graceful
// Shutdown.
func TestHTTP2(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Proto-Seen", r.Proto+" "+r.Header.Get("X-Forwarded-Proto"))
			io.WriteString(w, string(b))
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
		case "/cut":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only part")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	})
	p.Add(up)
	px, err := NewProxy(ProxyConfig{Pool: p, App: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := testenv.WriteCert(t, dir)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	var statuses []int // what an outer link (metrics, access log) reads
	var mu sync.Mutex
	outer := HandlerFunc(func(x *Exchange) {
		w := x.W
		px.ServeExchange(x)
		if s, ok := w.(interface{ Status() int }); ok {
			mu.Lock()
			statuses = append(statuses, s.Status())
			mu.Unlock()
		}
	})
	srv, err := NewServer(ServerConfig{Handler: outer, Listeners: []net.Listener{tl}, TLS: []bool{true}, HTTP2: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certPath)
	pool.AppendCertsFromPEM(pem)
	client := func(h2 bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	base := "https://" + l.Addr().String()
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{{"h2", true, "HTTP/2.0"}, {"h1", false, "HTTP/1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(tc.h2)
			for _, body := range []io.Reader{strings.NewReader("known length"), io.MultiReader(strings.NewReader("unknown length"))} {
				resp, err := c.Post(base+"/echo", "text/plain", body)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Proto != tc.proto || !strings.Contains(string(b), "length") || resp.Header.Get("X-Proto-Seen") != "HTTP/1.1 https" {
					t.Fatalf("%s %d %q, worker saw %q", resp.Proto, resp.StatusCode, b, resp.Header.Get("X-Proto-Seen"))
				}
			}
			resp, err := c.Get(base + "/trailer")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
				t.Errorf("trailer: %q %v", b, resp.Trailer)
			}
			resp, err = c.Head(base + "/echo")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("HEAD: %d", resp.StatusCode)
			}
			resp, err = c.Get(base + "/cut")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Errorf("a response cut short at the worker reached the client as complete")
			}
		})
	}

	mu.Lock()
	if len(statuses) < 10 || statuses[0] != 200 {
		t.Errorf("outer link read statuses %v", statuses)
	}
	mu.Unlock()

	// Shutdown with an idle h2 connection open: GOAWAY, and it returns.
	c := client(true)
	if resp, err := c.Get(base + "/echo"); err == nil {
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
