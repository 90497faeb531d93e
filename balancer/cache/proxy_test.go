package cache

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth/balancer"
)

// TestChunkedResponseStoredThroughProxy: a cacheable response the app
// streams without Content-Length is stored once the real proxy has seen
// its last chunk, and the next request is a hit the app never sees.
func TestChunkedResponseStoredThroughProxy(t *testing.T) {
	var calls atomic.Int32
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush() // no Content-Length: chunked
		io.WriteString(w, "part two")
	})
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	addr := throughProxy(t, c, app)

	for i, want := range []string{"fwd=miss", "hit"} {
		resp, err := http.Get("http://" + addr + "/stream")
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

// TestBackgroundRefreshThroughProxy: through the real front door and
// proxy, a stale-while-revalidate hit is answered while the app still
// holds the refresh, and the refresh reaches the worker without the
// client's Authorization or Cookie; its response is then stored.
func TestBackgroundRefreshThroughProxy(t *testing.T) {
	var calls atomic.Int32
	refresh := make(chan http.Header, 1)
	release := make(chan struct{})
	app := swrHTTPApp(&calls, func(n int32, r *http.Request) {
		if n == 2 {
			refresh <- r.Header.Clone()
			<-release
		}
	})
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	get := pageGetter(t, throughProxy(t, c, app))

	get()
	body, cs := get("Authorization", "Bearer secret", "Cookie", "sid=mine")
	if body != "v1" || !strings.HasPrefix(cs, "berth; fwd=stale; ttl=") {
		t.Fatalf("stale hit: %q %q", body, cs)
	}
	var h http.Header
	select {
	case h = <-refresh:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh reached the worker")
	}
	if h.Get("Authorization") != "" || h.Get("Cookie") != "" {
		t.Errorf("the refresh carried the client's credentials: %v", h)
	}
	// Until the refresh is stored, requests get the stale entry and
	// start no other refresh.
	if body, cs := get(); body != "v1" || !strings.HasPrefix(cs, "berth; hit; ttl=") {
		t.Errorf("during the refresh: %q %q", body, cs)
	}
	close(release)
	waitRefreshed(t, get)
	c.Close()
	if n := calls.Load(); n != 2 {
		t.Errorf("the app was asked %d times, want 2", n)
	}
}

// TestRefreshDoesNotQueue: a background refresh that finds no worker
// free (the only one is held, as while its event loop is blocked) gives
// up at once instead of waiting in the queue, where it would take a
// visitor's place; the stale entry goes on answering, and once the worker
// is back a later request refreshes it.
func TestRefreshDoesNotQueue(t *testing.T) {
	var calls atomic.Int32
	app := swrHTTPApp(&calls, nil)
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A queue timeout longer than the test: a refresh that queued would
	// stay queued.
	addr, pool := throughProxyPool(t, c, app, balancer.PoolConfig{QueueTimeout: time.Hour})
	get := pageGetter(t, addr)

	if body, cs := get(); body != "v1" || !strings.Contains(cs, "fwd=miss") {
		t.Fatalf("first request: %q %q", body, cs)
	}
	w1 := pool.Upstreams()[0]
	pool.SetHold(w1, balancer.HoldBlocked, true)
	if body, cs := get(); body != "v1" || !strings.HasPrefix(cs, "berth; fwd=stale") {
		t.Fatalf("stale hit with the worker held: %q %q, want v1 and a refresh started", body, cs)
	}
	// The refresh gives up at once: the entry is free to be refreshed
	// again, which the next stale hit does (fwd=stale), and nothing ever
	// waits in the queue. A refresh that queued would leave every later
	// request a plain hit.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if n := pool.Queued(); n != 0 {
			t.Fatalf("%d request(s) in the queue: a refresh is waiting for the held worker", n)
		}
		body, cs := get()
		if body != "v1" {
			t.Fatalf("while the worker is held: %q %q", body, cs)
		}
		if strings.HasPrefix(cs, "berth; fwd=stale") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refresh was still under way after 5 s (%q): it is waiting for a worker", cs)
		}
		time.Sleep(5 * time.Millisecond) // a poll for the refresh's end, with a deadline
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the app was asked %d times while held, want 1", n)
	}

	pool.SetHold(w1, balancer.HoldBlocked, false)
	waitRefreshed(t, get)
}

// waitRefreshed polls with get, for 10 s at most, until the stale "v1"
// has been replaced by a stored "v2" (a plain hit); any other answer
// fails t.
func waitRefreshed(t *testing.T, get func(kv ...string) (string, string)) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		body, cs := get()
		if body == "v2" && cs == "berth; hit" {
			return
		}
		if body != "v1" || time.Now().After(deadline) {
			t.Fatalf("waiting for the refresh: %q %q", body, cs)
		}
		time.Sleep(5 * time.Millisecond) // a poll for the store, with a deadline
	}
}

// swrHTTPApp answers "v1" with "max-age=0, stale-while-revalidate=60",
// then "vN" with "max-age=60", counting its requests in calls; before, if
// set, runs first with the request's number.
func swrHTTPApp(calls *atomic.Int32, before func(n int32, r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if before != nil {
			before(n, r)
		}
		if n == 1 {
			w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=60")
		} else {
			w.Header().Set("Cache-Control", "max-age=60")
		}
		io.WriteString(w, "v"+string(rune('0'+n)))
	})
}

// pageGetter returns a function that GETs /page from addr with the given
// field names and values, and returns the body and Cache-Status.
func pageGetter(t *testing.T, addr string) func(kv ...string) (string, string) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(kv ...string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/page", nil)
		for i := 0; i+1 < len(kv); i += 2 {
			req.Header.Set(kv[i], kv[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body), resp.Header.Get("Cache-Status")
	}
}

// throughProxy puts c in front of the real proxy and front door, with app
// as the one worker on a Unix socket, and returns the front door's
// address.
func throughProxy(t *testing.T, c *Cache, app http.Handler) string {
	t.Helper()
	addr, _ := throughProxyPool(t, c, app, balancer.PoolConfig{})
	return addr
}

// throughProxyPool is throughProxy with the worker pool's configuration
// given and the pool returned.
func throughProxyPool(t *testing.T, c *Cache, app http.Handler, cfg balancer.PoolConfig) (string, *balancer.Pool) {
	t.Helper()
	path := t.TempDir() + "/w1.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: app}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	pool := balancer.NewPool(cfg)
	pool.Add(&balancer.Upstream{Name: "w1", Network: "unix", Addr: path})
	px, err := balancer.NewProxy(balancer.ProxyConfig{Pool: pool})
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
	return fl.Addr().String(), pool
}
