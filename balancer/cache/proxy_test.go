package cache

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"berth/balancer"
)

// TestChunkedResponseStoredThroughProxy: a cacheable response the app
// streams without Content-Length is stored once the real proxy has seen
// its last chunk, and the next request is a hit the app never sees.
func TestChunkedResponseStoredThroughProxy(t *testing.T) {
	path := t.TempDir() + "/w1.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush() // no Content-Length: chunked
		io.WriteString(w, "part two")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	pool := balancer.NewPool(balancer.PoolConfig{})
	pool.Add(&balancer.Upstream{Name: "w1", Network: "unix", Addr: path})
	px, err := balancer.NewProxy(balancer.ProxyConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front, err := balancer.NewServer(balancer.ServerConfig{Handler: c.Wrap(px), Listeners: []net.Listener{fl}})
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(context.Background())
	t.Cleanup(func() { front.Close() })

	for i, want := range []string{"fwd=miss", "hit"} {
		resp, err := http.Get("http://" + fl.Addr().String() + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "part one, part two" || !strings.Contains(resp.Header.Get("Cache-Status"), want) {
			t.Fatalf("request %d: %q, Cache-Status %q; want the whole body and %q", i, body, resp.Header.Get("Cache-Status"), want)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the app was asked %d times, want 1", n)
	}
}
