package balancer

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"berth/balancer/h1"
)

// rawConn dials the front door for tests that speak HTTP by hand.
func rawConn(t *testing.T, fd *frontDoor) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", fd.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// waitNoConns waits until the server tracks no connection at all; it
// fails with complaint after 10 s.
func waitNoConns(t *testing.T, s *Server, complaint string) {
	t.Helper()
	if !waitServer(s, func() bool { return len(s.conns) == 0 }) {
		t.Fatal(complaint)
	}
}

// waitConns waits until the server tracks n connections in state.
func waitConns(t *testing.T, s *Server, state int32, n int) {
	t.Helper()
	got := 0
	if !waitServer(s, func() bool {
		got = 0
		for cn := range s.conns {
			if cn.state.Load() == state {
				got++
			}
		}
		return got == n
	}) {
		t.Fatalf("%d connections in state %d, want %d", got, state, n)
	}
}

// waitServer waits up to 10 s for cond, called with s.mu held, to hold,
// and reports whether it did. It looks again when the server's set of
// connections changes, and every 10 ms, since a connection changing
// state (active to idle) does not signal.
func waitServer(s *Server, cond func() bool) bool {
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}

// TestShutdownAnswersRequestArrivingLate: a connection accepted before
// shutdown whose request arrives after it began is answered (with
// Connection: close), where http.Server.Shutdown would close it unanswered.
func TestShutdownAnswersRequestArrivingLate(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered") })
	p.Add(up)
	fd := serve(t, p)
	c, r := rawConn(t, fd)
	waitConns(t, fd.srv, stateNew, 1)

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- fd.srv.Shutdown(ctx)
	}()
	// The listener closes first; then the late request arrives.
	deadline := time.Now().Add(5 * time.Second)
	for fd.srv.Draining() == false && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("late request unanswered: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "answered" || !resp.Close {
		t.Errorf("got %d %q close=%v, want 200 \"answered\" with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-drained; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestShutdownClosesIdleAndFinishesInFlight: idle keep-alive connections
// close at once; a request in progress is answered with Connection: close.
func TestShutdownClosesIdleAndFinishesInFlight(t *testing.T) {
	p := NewPool(PoolConfig{})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})
	p.Add(up)
	fd := serve(t, p)

	idle, idleR := rawConn(t, fd)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.Close {
		t.Fatalf("first request: %v", err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy, busyR := rawConn(t, fd)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered

	drained := make(chan error, 1)
	go func() { drained <- fd.srv.Shutdown(context.Background()) }()
	// The idle connection is closed without waiting for the busy one.
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: read %v, want EOF", err)
	}
	select {
	case err := <-drained:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	resp, err := http.ReadResponse(busyR, nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Errorf("in-flight request got %q close=%v, want \"done\" with Connection: close", body, resp.Close)
	}
	if err := <-drained; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestRefusedHeads: what the parser refuses is answered by the front door
// with the status that says why, the connection is closed, and the app
// sees nothing.
func TestRefusedHeads(t *testing.T) {
	p := NewPool(PoolConfig{})
	seen := make(chan string, 10)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.Path
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "app")
	})
	p.Add(up)
	fd := serve(t, p)
	for _, tc := range []struct {
		name string
		req  string
		want int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"tab before chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"obs-fold TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n", 400},
		{"differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"TE not chunked last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400},
		{"no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"huge header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"huge URI", "GET /" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"malformed chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := rawConn(t, fd)
			io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if _, err := r.ReadByte(); err != io.EOF {
				t.Errorf("connection left open after %d (read: %v)", resp.StatusCode, err)
			}
		})
	}
	select {
	case s := <-seen:
		if s != "POST /" { // only the malformed chunked body may have begun to reach the app
			t.Errorf("the app saw %q", s)
		}
	default:
	}
	for len(seen) > 0 {
		if s := <-seen; strings.Contains(s, "smuggled") {
			t.Errorf("a smuggled request reached the app: %q", s)
		}
	}
}

// TestResponseHopByHop: the front door drops from a response the fields
// that belong to the worker's connection: the framing and hop-by-hop
// fields it writes itself, and any field a Connection field names; the
// others reach the client as they were.
func TestResponseHopByHop(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fields    h1.Fields
		want, not []string
	}{
		{"no Connection field", fieldsOf("X-A", "1", "Keep-Alive", "timeout=5", "X-B", "2"),
			[]string{"X-A: 1", "X-B: 2"}, []string{"Keep-Alive"}},
		{"Connection names a field", fieldsOf("X-Hop", "1", "Connection", "x-hop, close", "X-Kept", "2"),
			[]string{"X-Kept: 2"}, []string{"X-Hop", "x-hop"}},
		{"two Connection fields", fieldsOf("Connection", "x-a", "X-A", "1", "Connection", "X-B", "X-B", "2", "X-C", "3"),
			[]string{"X-C: 3"}, []string{"X-A", "X-B", "x-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := HandlerFunc(func(x *Exchange) {
				resp := h1.Response{Status: 200, ContentLength: 2, Header: tc.fields}
				x.W.WriteHead(&resp)
				io.WriteString(x.W, "ok")
			})
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			srv, _ := NewServer(ServerConfig{Handler: h, Listeners: []net.Listener{l}})
			go srv.Serve(t.Context())
			t.Cleanup(func() { srv.Close() })
			c, r := rawConn(t, &frontDoor{Addr: l.Addr().String(), srv: srv})
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			var head strings.Builder
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("head %q: %v", head.String(), err)
				}
				if line == "\r\n" {
					break
				}
				head.WriteString(line)
			}
			for _, w := range tc.want {
				if !strings.Contains(head.String(), w+"\r\n") {
					t.Errorf("head %q lacks %q", head.String(), w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(head.String(), n) {
					t.Errorf("head %q carries %q", head.String(), n)
				}
			}
			if strings.Contains(head.String(), "Connection") {
				t.Errorf("head %q carries the worker's Connection field", head.String())
			}
		})
	}
}

// fieldsOf makes fields from name, value pairs.
func fieldsOf(kv ...string) h1.Fields {
	var fs h1.Fields
	for i := 0; i < len(kv); i += 2 {
		fs.Add([]byte(kv[i]), []byte(kv[i+1]))
	}
	return fs
}

// TestIdleTimeout: a keep-alive connection that keeps carrying requests
// stays open however long it is busy (the idle deadline moves with it,
// lazily); once idle, it is closed after IdleTimeout, early by at most
// the re-arm slack.
func TestIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	h := HandlerFunc(func(x *Exchange) { writeText(x.W, 200, "ok", nil) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Handler: h, Listeners: []net.Listener{l}, IdleTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(t.Context())
	t.Cleanup(func() { srv.Close() })
	c, r := rawConn(t, &frontDoor{Addr: l.Addr().String()})

	busyUntil := time.Now().Add(3 * idle)
	var last time.Time
	for n := 0; time.Now().Before(busyUntil); n++ {
		if n > 0 {
			time.Sleep(idle / 4) // the client's pace: well within the idle timeout
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("request %d on a connection busy for %s with an idle timeout of %s: %v", n, 3*idle, idle, err)
		}
		io.ReadAll(resp.Body)
		last = time.Now()
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (closed by berth)", err)
	}
	waited := time.Since(last)
	if waited < idle-idle/8-20*time.Millisecond || waited > idle+3*time.Second {
		t.Fatalf("idle connection closed after %s, want about %s", waited, idle)
	}
}

// TestIdleConnectionsHoldNoWriteBuffer: a keep-alive connection waiting
// for its next request has given its 16 KiB write buffer back (a busy one
// keeps it from one request to the next).
func TestIdleConnectionsHoldNoWriteBuffer(t *testing.T) {
	fd := serveHandler(t, HandlerFunc(func(x *Exchange) { writeText(x.W, 200, "ok", nil) }))
	srv := fd.srv

	heap := func() int64 {
		runtime.GC()
		runtime.GC() // a second cycle empties the pools
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	const n = 200
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", fd.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := c.Read(buf); err != nil { // the whole short answer comes in one read
			t.Fatal(err)
		}
	}
	waitConns(t, srv, stateIdle, n)
	var per int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		per = (heap() - before) / n
		if per < 10<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle keep-alive connections hold %d bytes each: their write buffers were not given back", n, per)
		}
		time.Sleep(10 * time.Millisecond) // a poll for the release, with a deadline
	}
	t.Logf("%d bytes per idle connection", per)
}
