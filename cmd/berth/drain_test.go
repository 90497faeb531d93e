package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestDrainAnswersRequestArrivingLate: a connection accepted before
// shutdown whose request arrives after it began is answered, where
// http.Server.Shutdown alone would close it unanswered.
func TestDrainAnswersRequestArrivingLate(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := newConnTracker()
	srv := &http.Server{
		ConnState: conns.ConnState,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("answered\n"))
		}),
	}
	var serving sync.WaitGroup
	serving.Add(1)
	go func() {
		defer serving.Done()
		srv.Serve(l)
	}()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait until the server has the connection (StateNew).
	deadline := time.Now().Add(10 * time.Second)
	for {
		conns.mu.Lock()
		n := len(conns.busy)
		conns.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never saw the connection")
		}
		time.Sleep(time.Millisecond)
	}

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- drain(ctx, srv, conns, []net.Listener{l}, &serving)
	}()
	// The listener closes first; then the late request.
	deadline = time.Now().Add(10 * time.Second)
	for {
		probe, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			break
		}
		probe.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open after drain began")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-drained:
		t.Fatalf("drain returned (%v) while a connection was new and could still bring a request", err)
	default:
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("late request: %v (the connection was closed unanswered)", err)
	}
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("late request: status %d, Connection: close %v; want 200 and close", resp.StatusCode, resp.Close)
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
}
