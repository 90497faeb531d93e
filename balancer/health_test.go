package balancer

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveProxy serves a Proxy configured by cfg (its Pool set to p).
func serveProxy(t *testing.T, p *Pool, cfg ProxyConfig) *frontDoor {
	t.Helper()
	cfg.Pool = p
	px, err := NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := NewServer(ServerConfig{Handler: px, Listeners: []net.Listener{l}})
	go srv.Serve(t.Context())
	t.Cleanup(func() { srv.Close() })
	return &frontDoor{URL: "http://" + l.Addr().String(), Addr: l.Addr().String(), srv: srv}
}

func named(t *testing.T, name string) *Upstream {
	up, _ := worker(t, name, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})
	return up
}

// TestHeldWorkerGetsNoRequest: a worker held out of rotation (its event
// loop is blocked, it runs out-of-band work) gets no new request; when
// every worker is held, requests wait for one to come back.
func TestHeldWorkerGetsNoRequest(t *testing.T) {
	p := NewPool(PoolConfig{})
	w1, w2 := named(t, "w1"), named(t, "w2")
	p.Add(w1)
	p.Add(w2)
	fd := serve(t, p)
	p.SetHold(w1, HoldBlocked, true)
	for i := 0; i < 10; i++ {
		if _, body := do(t, "GET", fd.URL, ""); body != "w2" {
			t.Fatalf("request %d went to %s, a held worker", i, body)
		}
	}
	p.SetHold(w2, HoldOOB, true)
	got := make(chan string, 1)
	go func() {
		_, body := do(t, "GET", fd.URL, "")
		got <- body
	}()
	deadline := time.Now().Add(5 * time.Second)
	for p.Queued() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Queued() != 1 {
		t.Fatal("with every worker held, the request did not wait in the queue")
	}
	p.SetHold(w1, HoldBlocked, false)
	if body := <-got; body != "w1" {
		t.Errorf("queued request went to %q, want w1 once back", body)
	}
}

// TestStickySessions: a response names its worker in a cookie, and
// requests carrying it go back to that worker while it is in service,
// else to the least busy one (with a new cookie).
func TestStickySessions(t *testing.T) {
	p := NewPool(PoolConfig{})
	w1, w2 := named(t, "w1"), named(t, "w2")
	p.Add(w1)
	p.Add(w2)
	fd := serveProxy(t, p, ProxyConfig{StickyCookie: "berth_sticky"})
	get := func(cookie string) (string, string) {
		req, _ := http.NewRequest("GET", fd.URL, nil)
		if cookie != "" {
			req.Header.Set("Cookie", "a=b; "+cookie+"; c=d")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("Set-Cookie")
	}
	first, set := get("")
	if !strings.HasPrefix(set, "berth_sticky="+first+";") {
		t.Fatalf("first answer from %s set cookie %q", first, set)
	}
	for i := 0; i < 10; i++ {
		body, set := get("berth_sticky=" + first)
		if body != first || set != "" {
			t.Fatalf("sticky request %d went to %s (Set-Cookie %q), want %s and no new cookie", i, body, set, first)
		}
	}
	held := w1
	if first == "w2" {
		held = w2
	}
	p.SetHold(held, HoldRecycle, true)
	body, set := get("berth_sticky=" + first)
	if body == first || !strings.HasPrefix(set, "berth_sticky="+body+";") {
		t.Errorf("with %s held, got %s and cookie %q", first, body, set)
	}
}

// TestMaxRequestTime: a worker that does not begin its answer in time
// gives the client a 504 that says so and is reported; a response that
// keeps streaming is not cut.
func TestMaxRequestTime(t *testing.T) {
	p := NewPool(PoolConfig{})
	release := make(chan struct{})
	defer close(release)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			<-release
		case "/stream":
			for i := 0; i < 8; i++ {
				io.WriteString(w, "tick\n")
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	p.Add(up)
	var reported atomic.Int32
	fd := serveProxy(t, p, ProxyConfig{App: "shop", MaxRequestTime: 300 * time.Millisecond,
		OnTimeout: func(u *Upstream) { reported.Add(1) }})
	code, body := do(t, "GET", fd.URL+"/hang", "")
	if code != 504 || !strings.Contains(body, "maximum request time") {
		t.Errorf("hung request: %d %q, want 504 naming the maximum request time", code, body)
	}
	if reported.Load() != 1 {
		t.Errorf("OnTimeout called %d times, want 1", reported.Load())
	}
	code, body = do(t, "GET", fd.URL+"/stream", "")
	if code != 200 || strings.Count(body, "tick") != 8 {
		t.Errorf("a streaming response making progress was cut: %d %q", code, body)
	}
}

// TestOutOfBandWorkRequest: the response field asking for out-of-band
// work is taken off and reported with the worker.
func TestOutOfBandWorkRequest(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Passenger-Request-OOB-Work", "true")
		io.WriteString(w, "ok")
	})
	p.Add(up)
	got := make(chan string, 1)
	fd := serveProxy(t, p, ProxyConfig{OnOOB: func(u *Upstream) { got <- u.Name }})
	resp, err := http.Get(fd.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Passenger-Request-OOB-Work") != "" {
		t.Error("the OOB field reached the client")
	}
	select {
	case name := <-got:
		if name != "w1" {
			t.Errorf("OOB reported for %s", name)
		}
	default:
		t.Error("OOB work request not reported")
	}
}

// TestDrainWaitsForInflight: Drain takes a worker out of service at once
// and returns when its last request is done.
func TestDrainWaitsForInflight(t *testing.T) {
	p := NewPool(PoolConfig{})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	})
	p.Add(up)
	fd := serve(t, p)
	got := make(chan string, 1)
	go func() {
		_, body := do(t, "GET", fd.URL, "")
		got <- body
	}()
	<-entered
	drained := make(chan error, 1)
	go func() { drained <- p.Drain(t.Context(), up) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Upstreams()) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if len(p.Upstreams()) != 0 {
		t.Fatal("Drain left the worker in service")
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if body := <-got; body != "finished" {
		t.Errorf("in-flight request got %q", body)
	}
}
