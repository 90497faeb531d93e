package balancer

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"berth/balancer/loop"
)

// worker serves h on a Unix socket in dir and returns its Upstream.
func worker(t *testing.T, name string, h http.HandlerFunc) (*Upstream, *httptest.Server) {
	t.Helper()
	path := t.TempDir() + "/" + name + ".sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return &Upstream{Name: name, Network: "unix", Addr: path}, s
}

// engine is what serves the test servers' connections: goroutine (berth
// serve's default) or loop. `make test` runs this package once with each.
var engine = flag.String("engine", "goroutine", "goroutine or loop: what serves the test servers' connections")

// testLoops returns two event loops, closed when the test ends, or nil
// with -engine=goroutine.
func testLoops(t *testing.T) []*loop.Loop {
	t.Helper()
	switch *engine {
	case "goroutine":
		return nil
	case "loop":
	default:
		t.Fatalf("-engine=%q: want loop or goroutine", *engine)
	}
	var loops []*loop.Loop
	for range 2 {
		lp, err := loop.New(loop.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lp.Close() })
		loops = append(loops, lp)
	}
	return loops
}

// frontDoor is a running Server in front of a Pool, for tests.
type frontDoor struct {
	URL  string
	Addr string
	srv  *Server
}

func serve(t *testing.T, p *Pool) *frontDoor {
	t.Helper()
	return serveChain(t, p, nil)
}

// serveChain serves p's Proxy, wrapped by wrap if not nil.
func serveChain(t *testing.T, p *Pool, wrap func(Handler) Handler) *frontDoor {
	t.Helper()
	px, err := NewProxy(ProxyConfig{Pool: p, App: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	var h Handler = px
	if wrap != nil {
		h = wrap(h)
	}
	return serveHandler(t, h)
}

// serveHandler serves h on a loopback port until the test ends.
func serveHandler(t *testing.T, h Handler) *frontDoor {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Handler: h, Listeners: []net.Listener{l}, Loops: testLoops(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &frontDoor{URL: "http://" + l.Addr().String(), Addr: l.Addr().String(), srv: srv}
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProxyRetriesRefusedDial(t *testing.T) {
	p := NewPool(PoolConfig{})
	dead := &Upstream{Name: "w1", Network: "unix", Addr: t.TempDir() + "/gone.sock"}
	live, _ := worker(t, "w2", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "w2 got "+string(b))
	})
	p.Add(dead)
	p.Add(live)
	s := serve(t, p)
	for i := 0; i < 4; i++ { // whichever is picked first, the body arrives whole at w2
		code, body := do(t, "POST", s.URL, "payload")
		if code != 200 || body != "w2 got payload" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
}

func TestProxyWorkerDiesMidRequest(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close() // the worker crashes while handling the request
	})
	p.Add(up)
	s := serve(t, p)
	code, body := do(t, "POST", s.URL, "x")
	if code != http.StatusBadGateway || !strings.Contains(body, "worker w1 failed while handling the request") {
		t.Fatalf("got %d %q, want 502 naming the worker", code, body)
	}
}

func TestNoWorker503(t *testing.T) {
	p := NewPool(PoolConfig{QueueTimeout: 50 * time.Millisecond})
	s := serve(t, p)
	code, body := do(t, "GET", s.URL, "")
	if code != 503 || !strings.Contains(body, "no worker ready") {
		t.Fatalf("got %d %q", code, body)
	}
	p.SetUnavailable("the app fails to start: boom")
	start := time.Now()
	code, body = do(t, "GET", s.URL, "")
	if code != 503 || !strings.Contains(body, "fails to start: boom") {
		t.Fatalf("got %d %q", code, body)
	}
	if time.Since(start) > time.Second {
		t.Errorf("an unavailable app made the request wait %s", time.Since(start))
	}
}

func TestQueuedRequestGetsWorkerWhenReady(t *testing.T) {
	p := NewPool(PoolConfig{QueueTimeout: 10 * time.Second})
	s := serve(t, p)
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get(s.URL)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for p.Queued() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "late worker") })
	p.Add(up)
	if body := <-done; body != "late worker" {
		t.Fatalf("queued request got %q", body)
	}
}

func TestQueueFull(t *testing.T) {
	p := NewPool(PoolConfig{MaxQueue: 1, QueueTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Acquire(ctx, nil) // takes the only place
	deadline := time.Now().Add(5 * time.Second)
	for p.Queued() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := p.Acquire(context.Background(), nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second waiter: %v, want ErrQueueFull", err)
	}
}

func TestInflightCounts(t *testing.T) {
	p := NewPool(PoolConfig{})
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	slow, _ := worker(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	p.Add(slow)
	s := serve(t, p)
	go http.Get(s.URL)
	<-entered
	if n := slow.Inflight(); n != 1 {
		t.Errorf("inflight %d during a request, want 1", n)
	}
	// Served counts completed requests, not dispatched ones.
	if n, total := slow.Served(), p.Total(); n != 0 || total != 0 {
		t.Errorf("served %d (pool total %d) while the only request is in flight, want 0", n, total)
	}
	fast, _ := worker(t, "fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })
	p.Add(fast)
	if _, body := do(t, "GET", s.URL, ""); body != "fast" {
		t.Errorf("a request went to the busy worker (%q), want the idle one", body)
	}
	if n := fast.Served(); n != 1 {
		t.Errorf("fast worker served %d after one request, want 1", n)
	}
	close(release)
}
