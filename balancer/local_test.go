package balancer

import (
	"context"
	"net/http"
	"testing"
	"time"

	"berth/balancer/h1"
)

// memW keeps what a ResponseWriter is given (the caller's end of Do).
type memW struct {
	status   int
	header   h1.Fields
	body     []byte
	complete bool
}

func (w *memW) WriteHead(r *h1.Response) error {
	w.status = r.Status
	w.header = copyFields(nil, r.Header)
	return nil
}
func (w *memW) Write(p []byte) (int, error) { w.body = append(w.body, p...); return len(p), nil }
func (w *memW) Flush() error                { return nil }
func (w *memW) BodyComplete()               { w.complete = true }

// TestDo: a request berth makes itself goes through the Proxy to a worker
// with the fields it was given and no client's address, and its answer
// comes back to the caller's writer, whole.
func TestDo(t *testing.T) {
	seen := make(chan http.Header, 1)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("X-App", "yes")
		w.(http.Flusher).Flush() // chunked: BodyComplete must reach the caller
		w.Write([]byte("fresh"))
	})
	p := NewPool(PoolConfig{})
	p.Add(up)
	px, err := NewProxy(ProxyConfig{Pool: p})
	if err != nil {
		t.Fatal(err)
	}
	w := &memW{}
	req := &h1.Request{Method: []byte("GET"), Target: []byte("/page?x=1"), Minor: 1, KeepAlive: true,
		Header: h1.Fields{{Name: []byte("Host"), Value: []byte("example.com")}}}
	x := &Exchange{Req: req, W: w, TLS: true}
	Do(context.Background(), px, x)
	if x.W != w {
		t.Error("Do left its own writer in the exchange")
	}
	if w.status != 200 || string(w.body) != "fresh" || string(w.header.Get("X-App")) != "yes" || !w.complete {
		t.Errorf("got %d %q %v complete=%v", w.status, w.body, w.header, w.complete)
	}
	h := <-seen
	if h.Get("X-Forwarded-For") != "unix" || h.Get("X-Forwarded-Proto") != "https" || h.Get("Forwarded") != `for=unknown;host="example.com";proto=https` {
		t.Errorf("forwarding fields %v", h)
	}
}

// TestDoDeadline: when Do's context ends, a wait for a worker that does
// not answer ends too, with a 504 to the caller.
func TestDoDeadline(t *testing.T) {
	gone := make(chan struct{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // berth closed the connection
		close(gone)
	})
	p := NewPool(PoolConfig{})
	p.Add(up)
	px, err := NewProxy(ProxyConfig{Pool: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	w := &memW{}
	req := &h1.Request{Method: []byte("GET"), Target: []byte("/slow"), Minor: 1, KeepAlive: true,
		Header: h1.Fields{{Name: []byte("Host"), Value: []byte("example.com")}}}
	returned := make(chan struct{})
	go func() { Do(ctx, px, &Exchange{Req: req, W: w}); close(returned) }()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Do did not return after its deadline")
	}
	if w.status != 504 {
		t.Errorf("status %d, want 504", w.status)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker's connection stayed open")
	}
}

// TestNoQueue: an exchange that may not wait for a worker gets a 503 at
// once when none is free (here the only one is held), and takes no place
// in the queue; once the worker is back, the same kind of exchange
// reaches it.
func TestNoQueue(t *testing.T) {
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("fresh"))
	})
	// A queue timeout longer than the test: an exchange that queued
	// would hold Do until the test's own deadline.
	p := NewPool(PoolConfig{QueueTimeout: time.Hour})
	p.Add(up)
	px, err := NewProxy(ProxyConfig{Pool: p})
	if err != nil {
		t.Fatal(err)
	}
	do := func() *memW {
		t.Helper()
		w := &memW{}
		req := &h1.Request{Method: []byte("GET"), Target: []byte("/page"), Minor: 1, KeepAlive: true,
			Header: h1.Fields{{Name: []byte("Host"), Value: []byte("example.com")}}}
		x := &Exchange{Req: req, W: w, NoQueue: true}
		returned := make(chan struct{})
		go func() { Do(context.Background(), px, x); close(returned) }()
		select {
		case <-returned:
		case <-time.After(10 * time.Second):
			t.Fatalf("Do did not return; %d request(s) queued", p.Queued())
		}
		if x.Worker == nil && w.status != 503 {
			t.Errorf("no worker and status %d, want 503", w.status)
		}
		return w
	}

	p.SetHold(up, HoldBlocked, true)
	if w := do(); w.status != 503 {
		t.Errorf("with the only worker held: %d %q, want 503", w.status, w.body)
	}
	if n := p.Queued(); n != 0 {
		t.Errorf("%d queued after the refusal", n)
	}
	p.SetHold(up, HoldBlocked, false)
	if w := do(); w.status != 200 || string(w.body) != "fresh" {
		t.Errorf("with the worker back: %d %q", w.status, w.body)
	}
}
