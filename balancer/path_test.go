package balancer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"berth/balancer/h1"
)

// TestPoisonRequestCostsOneWorker: a request whose handler kills its
// worker, sent while every worker's connection pool is warm, reaches
// exactly one worker and is answered 502 saying it was not retried.
func TestPoisonRequestCostsOneWorker(t *testing.T) {
	for try := 0; try < 6; try++ {
		p := NewPool(PoolConfig{})
		var hit atomic.Int32
		for i := 1; i <= 3; i++ {
			var l net.Listener
			name := fmt.Sprintf("w%d", i)
			path := t.TempDir() + "/" + name + ".sock"
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{}
			srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/crash" {
					hit.Add(1)
					// The process dies: its listener and every connection go.
					l.Close()
					go srv.Close()
					c, _, _ := w.(http.Hijacker).Hijack()
					c.Close()
					return
				}
				io.WriteString(w, "ok")
			})
			go srv.Serve(l)
			t.Cleanup(func() { srv.Close() })
			p.Add(&Upstream{Name: name, Network: "unix", Addr: path})
		}
		fd := serve(t, p)
		// Warm every worker's pool with several connections.
		var wg sync.WaitGroup
		for i := 0; i < 12; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				do(t, "GET", fd.URL+"/warm", "")
			}()
		}
		wg.Wait()
		code, body := do(t, "GET", fd.URL+"/crash", "")
		if n := hit.Load(); n != 1 {
			t.Fatalf("try %d: the poison request reached %d workers, want 1", try, n)
		}
		if code != 502 || !strings.Contains(body, "was not retried") {
			t.Fatalf("try %d: got %d %q, want 502 saying it was not retried", try, code, body)
		}
	}
}

// TestHTTP10WithoutHost: an HTTP/1.0 request without Host reaches the app
// without one (not with an internal name of berth's).
func TestHTTP10WithoutHost(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%q proto=%s", r.Host, r.Proto)
	})
	p.Add(up)
	fd := serve(t, p)
	c, r := rawConn(t, fd)
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != `host="" proto=HTTP/1.0` {
		t.Errorf("app saw %s", body)
	}
}

// TestServerSentEventArrivesAtOnce: a streamed response reaches the
// client as the worker writes it, not when it ends.
func TestServerSentEventArrivesAtOnce(t *testing.T) {
	p := NewPool(PoolConfig{})
	release := make(chan struct{})
	defer close(release)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
	})
	p.Add(up)
	fd := serve(t, p)
	c, r := rawConn(t, fd)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("event: %q, %v", line, err)
	}
}

// TestLargeDownloadStreamsInBoundedMemory: 50 MB pass through berth while
// it allocates a small fraction of that.
func TestLargeDownloadStreamsInBoundedMemory(t *testing.T) {
	const size = 50 << 20
	p := NewPool(PoolConfig{})
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cl") != "" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		for n := 0; n < size; n += len(chunk) {
			w.Write(chunk)
		}
	})
	p.Add(up)
	fd := serve(t, p)
	for _, q := range []string{"?cl=1", ""} {
		c, r := rawConn(t, fd)
		c.SetDeadline(time.Now().Add(60 * time.Second))
		io.WriteString(c, "GET /big"+q+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n, err := io.Copy(io.Discard, resp.Body)
		runtime.ReadMemStats(&after)
		if err != nil || n != size {
			t.Fatalf("%s: read %d, %v", q, n, err)
		}
		// The worker (net/http, in this process) allocates too; berth's
		// share must not grow with the body.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
			t.Errorf("%s: %d MB allocated while 50 MB streamed", q, grew>>20)
		}
	}
}

// TestUploadStreamsWithExpectContinue: a client waiting for 100 Continue
// gets it, its body streams to the app whole, chunked or by length.
func TestUploadStreamsWithExpectContinue(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x expect=%q trailer=%q", n, h.Sum(nil)[:4], r.Header.Get("Expect"), r.Trailer.Get("X-Sum"))
	})
	p.Add(up)
	fd := serve(t, p)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("%d %x expect=\"\"", len(body), sum[:4])

	c, r := rawConn(t, fd)
	fmt.Fprintf(c, "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("want 100 Continue first, got %v %v", resp, err)
	}
	c.Write(body)
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(got), want) {
		t.Errorf("by length: app got %s, want %s", got, want)
	}

	// Chunked, with a trailer.
	fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
	for i := 0; i < len(body); i += 100000 {
		part := body[i:min(i+100000, len(body))]
		fmt.Fprintf(c, "%x\r\n%s\r\n", len(part), part)
	}
	io.WriteString(c, "0\r\nX-Sum: yes\r\n\r\n")
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	if string(got) != want+` trailer="yes"` {
		t.Errorf("chunked: app got %s, want %s trailer=\"yes\"", got, want)
	}
}

// TestResponseFraming: HEAD, early hints, chunked responses with
// trailers, HTTP/1.0 clients and keep-alive all come out right.
func TestResponseFraming(t *testing.T) {
	p := NewPool(PoolConfig{})
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(103)
			io.WriteString(w, "final")
		case "/trailer":
			w.Header().Set("Trailer", "X-Done")
			io.WriteString(w, "part1;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Done", "yes")
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	})
	p.Add(up)
	fd := serve(t, p)
	c, r := rawConn(t, fd)

	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, &http.Request{Method: "HEAD"})
	if err != nil || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	io.WriteString(c, "GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
		t.Fatalf("early hints: %v %v", resp, err)
	}
	resp, err = http.ReadResponse(r, nil)
	if b, _ := io.ReadAll(resp.Body); err != nil || string(b) != "final" {
		t.Fatalf("after hints: %q %v", b, err)
	}
	io.WriteString(c, "GET /trailer HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "part1;part2" || resp.Trailer.Get("X-Done") != "yes" {
		t.Errorf("chunked with trailer: %q trailer %v", b, resp.Trailer)
	}
	if resp.Close {
		t.Errorf("keep-alive lost after a chunked response")
	}

	// HTTP/1.0 keep-alive, then a plain HTTP/1.0 request that closes.
	c2, r2 := rawConn(t, fd)
	io.WriteString(c2, "GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
	resp, err = http.ReadResponse(r2, nil)
	if err != nil || resp.Close {
		t.Fatalf("1.0 keep-alive: %v close=%v", err, resp != nil && resp.Close)
	}
	io.ReadAll(resp.Body)
	io.WriteString(c2, "GET /trailer HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(r2, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "part1;part2" {
		t.Errorf("1.0 close-delimited body %q", b)
	}
	if _, err := r2.ReadByte(); err != io.EOF {
		t.Errorf("1.0 connection not closed after a close-delimited body")
	}
}

// TestStalledClientsAreDropped: a head that stops coming gets 408, a body
// that stops coming and a client that stops reading lose the connection,
// each within its timeout.
func TestStalledClientsAreDropped(t *testing.T) {
	p := NewPool(PoolConfig{})
	big := bytes.Repeat([]byte("z"), 8<<20)
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.Copy(io.Discard, r.Body)
	})
	p.Add(up)
	px, _ := NewProxy(ProxyConfig{Pool: p})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	srv, _ := NewServer(ServerConfig{Handler: px, Listeners: []net.Listener{l},
		HeaderTimeout: 300 * time.Millisecond, BodyTimeout: 400 * time.Millisecond})
	go srv.Serve(t.Context())
	t.Cleanup(func() { srv.Close() })
	fd := &frontDoor{URL: "http://" + l.Addr().String(), Addr: l.Addr().String(), srv: srv}

	t.Run("head", func(t *testing.T) {
		c, r := rawConn(t, fd)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 408 {
			t.Fatalf("stalled head: %v %v, want 408", resp, err)
		}
	})
	t.Run("body", func(t *testing.T) {
		c, r := rawConn(t, fd)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
		start := time.Now()
		resp, err := http.ReadResponse(r, nil)
		if err == nil {
			io.ReadAll(resp.Body)
			_, err = r.ReadByte()
		}
		if err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("stalled body: connection still open (%v after %s)", err, time.Since(start))
		}
	})
	t.Run("reader", func(t *testing.T) {
		c, _ := rawConn(t, fd)
		c.(*net.TCPConn).SetReadBuffer(4096)
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		waitNoConns(t, srv, "a client that stopped reading still holds its connection")
	})
}

// TestStalledReaderOfWrittenBody: a link that writes a large body piece
// by piece (as the cache and the error pages do, not by ReadFrom) to a
// client that stopped reading gets a write error within BodyTimeout, and
// the connection goes: each write that reaches the socket keeps the
// write deadline.
func TestStalledReaderOfWrittenBody(t *testing.T) {
	piece := bytes.Repeat([]byte("z"), 16<<10)
	const pieces = 4096 // 64 MiB, far more than the socket buffers hold
	werr := make(chan error, 1)
	h := HandlerFunc(func(x *Exchange) {
		resp := h1.Response{Status: 200, ContentLength: int64(len(piece) * pieces)}
		if err := x.W.WriteHead(&resp); err != nil {
			werr <- err
			return
		}
		for range pieces {
			if _, err := x.W.Write(piece); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	srv, _ := NewServer(ServerConfig{Handler: h, Listeners: []net.Listener{l}, BodyTimeout: 400 * time.Millisecond})
	go srv.Serve(t.Context())
	t.Cleanup(func() { srv.Close() })
	c, _ := rawConn(t, &frontDoor{Addr: l.Addr().String(), srv: srv})
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-werr:
		if err == nil {
			t.Fatal("64 MiB written to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write to a client that stopped reading still blocks after 10 s")
	}
	waitNoConns(t, srv, "a client that stopped reading still holds its connection")
}

// TestUnreadRequestIsSentAgain: a worker that closes a connection with
// berth's request unread in it (a worker told to stop closing what it saw
// as an idle keep-alive) never saw the request: berth sends it again on
// a fresh connection, and the client sees no error.
func TestUnreadRequestIsSentAgain(t *testing.T) {
	path := t.TempDir() + "/w1.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var served atomic.Int32
	go func() {
		first := true
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if first {
				first = false
				// Wait until the request is in the socket, then close
				// without reading it.
				raw, _ := c.(*net.UnixConn).SyscallConn()
				raw.Read(func(fd uintptr) bool {
					var b [1]byte
					_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
					return err != syscall.EAGAIN
				})
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for skipRequest(r) == nil {
					served.Add(1)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	p := NewPool(PoolConfig{})
	p.Add(&Upstream{Name: "w1", Network: "unix", Addr: path})
	fd := serve(t, p)
	code, body := do(t, "GET", fd.URL, "")
	if code != 200 || body != "ok" || served.Load() != 1 {
		t.Fatalf("got %d %q (served %d), want 200 \"ok\" served once", code, body, served.Load())
	}
}
