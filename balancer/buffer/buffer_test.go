package buffer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/balancer"
)

type fixture struct {
	addr string
	up   *balancer.Upstream
	buf  *Buffer
}

// newFixture serves Buffer → Proxy → one worker running h.
func newFixture(t *testing.T, h http.HandlerFunc, cfg Config) *fixture {
	t.Helper()
	sock := t.TempDir() + "/w1.sock"
	wl, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ws := httptest.NewUnstartedServer(h)
	ws.Listener = wl
	ws.Start()
	t.Cleanup(ws.Close)
	pool := balancer.NewPool(balancer.PoolConfig{})
	up := &balancer.Upstream{Name: "w1", Network: "unix", Addr: sock}
	pool.Add(up)
	px, err := balancer.NewProxy(balancer.ProxyConfig{Pool: pool, App: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Next = px
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: b, Listeners: []net.Listener{l}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		if n := b.mem.Load(); n != 0 {
			t.Errorf("%d bytes of memory still counted as held", n)
		}
	})
	return &fixture{addr: l.Addr().String(), up: up, buf: b}
}

func (f *fixture) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

// waitIdle waits until the worker has no request in flight.
func waitIdle(t *testing.T, up *balancer.Upstream, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for up.Inflight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: worker still has %d in flight", why, up.Inflight())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSlowReaderFreesWorker: a client that reads nothing of a 32 MiB
// response leaves the worker idle once it wrote it; the client then gets
// every byte.
func TestSlowReaderFreesWorker(t *testing.T) {
	body := make([]byte, 32<<20)
	rand.Read(body)
	wrote := make(chan struct{}, 1)
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		wrote <- struct{}{}
	}, Config{MemoryBytes: 1 << 20})
	c, br := f.dial(t)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-wrote:
	case <-time.After(20 * time.Second):
		t.Fatal("the worker could not write its whole response while the client read nothing")
	}
	waitIdle(t, f.up, "client not reading")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("client got %d bytes (%v), not the %d the worker sent", len(got), err, len(body))
	}
	// The connection carries another request.
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	<-wrote
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := io.Copy(io.Discard, resp.Body); n != int64(len(body)) {
		t.Fatalf("second response: %d bytes", n)
	}
}

// TestSlowUploadNotInFlight: the worker sees nothing of a request until
// its body is complete, and then gets it with a Content-Length, also when
// the client sent it chunked.
func TestSlowUploadNotInFlight(t *testing.T) {
	type seen struct {
		cl   int64
		te   []string
		body string
	}
	got := make(chan seen, 4)
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.ContentLength, r.TransferEncoding, string(b)}
		io.WriteString(w, "ok")
	}, Config{MemoryBytes: 1000})
	payload := strings.Repeat("u", 5000) // past MemoryBytes: a file holds it
	for _, tc := range []struct {
		name, head, part1, part2 string
	}{
		{"length", "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", payload[:3000], payload[3000:]},
		{"chunked", "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "bb8\r\n" + payload[:3000] + "\r\n", "7d0\r\n" + payload[3000:] + "\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := f.dial(t)
			io.WriteString(c, tc.head+tc.part1)
			select {
			case s := <-got:
				t.Fatalf("the worker saw the request before its body was complete: %+v", s)
			case <-time.After(300 * time.Millisecond): // a negative: nothing to wait on
			}
			if n := f.up.Inflight(); n != 0 {
				t.Fatalf("worker has %d in flight during the upload", n)
			}
			io.WriteString(c, tc.part2)
			s := <-got
			if s.cl != 5000 || len(s.te) != 0 || s.body != payload {
				t.Fatalf("worker saw Content-Length %d, Transfer-Encoding %v, %d bytes", s.cl, s.te, len(s.body))
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%v %v", resp, err)
			}
		})
	}
}

// TestStreamsPassThrough: a chunked response (server-sent events)
// reaches the client while the worker is still writing, and an upload
// under a stream path reaches the worker while the client still sends.
func TestStreamsPassThrough(t *testing.T) {
	release := make(chan struct{})
	partial := make(chan string, 1)
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
			<-release
		case "/live/upload":
			partial <- "called" // the head is here; the body is still coming
			io.Copy(io.Discard, r.Body)
		}
	}, Config{StreamPaths: []string{"/live"}})
	c, br := f.dial(t)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: 1\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	close(release)

	c2, _ := f.dial(t)
	io.WriteString(c2, "POST /live/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfirst")
	select {
	case p := <-partial:
		if p != "called" {
			t.Fatalf("worker read %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an upload under a stream path was held until complete")
	}
}

func TestStreaming(t *testing.T) {
	b := &Buffer{cfg: Config{StreamPaths: []string{"/live", "/s/"}}}
	for path, want := range map[string]bool{"/live": true, "/live/x": true, "/lively": false, "/s/x": true, "/s": false, "/": false} {
		if got := b.streaming([]byte(path)); got != want {
			t.Errorf("streaming(%q) = %v", path, got)
		}
	}
}

// completer is an outer writer that wants to hear BodyComplete (as the
// response cache's recorder does).
type completer struct {
	balancer.ResponseWriter
	ended bool
	bytes int
}

func (c *completer) Write(p []byte) (int, error) {
	c.bytes += len(p)
	return c.ResponseWriter.Write(p)
}
func (c *completer) BodyComplete() { c.ended = true }

// TestBodyCompletePassedOn: the proxy's BodyComplete reaches a writer
// outside the buffer, after the held body went out to it.
func TestBodyCompletePassedOn(t *testing.T) {
	for _, size := range []int{100, 1 << 20} { // passed through, held
		body := strings.Repeat("c", size)
		done := make(chan *completer, 1)
		f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body)
		}, Config{})
		// Wrap: an outer link records what reaches it.
		wrapped := balancer.HandlerFunc(func(x *balancer.Exchange) {
			c := &completer{ResponseWriter: x.W}
			x.W = c
			f.buf.ServeExchange(x)
			done <- c
		})
		addr := serveWith(t, wrapped)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		c.Close()
		got := <-done
		if got == nil || !got.ended || got.bytes != size {
			t.Errorf("%d bytes: outer writer saw %+v, want BodyComplete after all bytes", size, got)
		}
	}
}

// serveWith serves h on a loopback port.
func serveWith(t *testing.T, h balancer.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: h, Listeners: []net.Listener{l}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().String()
}
