package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// connTracker follows an http.Server's connections (as its ConnState hook)
// so that shutdown can wait for the requests in them before calling
// Server.Shutdown. Shutdown alone loses requests under socket activation:
// net/http drops a request it reads after Shutdown began (conn.serve
// returns without answering when the server is shutting down), and at a
// `systemctl restart` under load there is always a connection that was
// accepted from the shared socket a moment before its request arrived.
type connTracker struct {
	mu      sync.Mutex // protects busy, changed
	busy    map[net.Conn]busyConn
	changed chan struct{} // closed and replaced when busy shrinks
}

// busyConn is a connection that is new (since then) or serving a request.
type busyConn struct {
	new   bool
	since time.Time
}

func newConnTracker() *connTracker {
	return &connTracker{busy: map[net.Conn]busyConn{}, changed: make(chan struct{})}
}

// ConnState is the http.Server.ConnState hook: a connection is busy while
// it is new (a request may be on its way) or active.
func (t *connTracker) ConnState(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case http.StateNew, http.StateActive:
		t.busy[c] = busyConn{new: st == http.StateNew, since: time.Now()}
	default:
		if _, ok := t.busy[c]; ok {
			delete(t.busy, c)
			close(t.changed)
			t.changed = make(chan struct{})
		}
	}
}

// newConnGrace is how long a connection may stay new without sending a
// request before it is not waited for, as http.Server.Shutdown has it.
const newConnGrace = 5 * time.Second

// drain stops srv without losing an accepted request: it turns keep-alives
// off (idle connections close, every answer says Connection: close), closes
// the listeners, waits for the Serve loops (serving) to return, then until
// no connection has a request in progress, and calls Shutdown to close
// what is left. It returns ctx's error if requests were still running when
// ctx ended.
func drain(ctx context.Context, srv *http.Server, t *connTracker, listeners []net.Listener, serving *sync.WaitGroup) error {
	srv.SetKeepAlivesEnabled(false)
	for _, l := range listeners {
		l.Close()
	}
	serving.Wait() // every accepted connection is tracked now
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		t.mu.Lock()
		waiting := 0
		for _, b := range t.busy {
			if !b.new || time.Since(b.since) < newConnGrace {
				waiting++
			}
		}
		changed := t.changed
		t.mu.Unlock()
		if waiting == 0 {
			break
		}
		select {
		case <-changed:
		case <-tick.C: // a new connection may have passed its grace
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return srv.Shutdown(ctx)
}
