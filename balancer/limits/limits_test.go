package limits

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// accepted runs an accept loop over l and delivers what it accepts.
func accepted(t *testing.T, l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func dial(t *testing.T, addr string, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMaxConnsWaitInBacklog: the connection over the limit is not
// accepted (and not reset) until one closes; then it is served.
func TestMaxConnsWaitInBacklog(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(raw, ListenerConfig{MaxConns: 2}).(*Listener)
	ch := accepted(t, l)
	addr := raw.Addr().String()
	dial(t, addr, "")
	dial(t, addr, "")
	a1, _ := next(t, ch), next(t, ch)
	third := dial(t, addr, "")
	io.WriteString(third, "waiting")
	select {
	case <-ch:
		t.Fatal("a third connection was accepted over MaxConns 2")
	case <-time.After(200 * time.Millisecond): // a negative: nothing to wait on
	}
	if l.Open() != 2 {
		t.Fatalf("Open %d, want 2", l.Open())
	}
	a1.Close()
	a1.Close() // twice: one slot back only
	a3 := next(t, ch)
	a3.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 7)
	if _, err := io.ReadFull(a3, buf); err != nil || string(buf) != "waiting" {
		t.Fatalf("the waiting connection's bytes: %q %v", buf, err)
	}
	if l.Open() != 2 {
		t.Fatalf("Open %d, want 2", l.Open())
	}
	// Close ends an Accept waiting for a slot.
	l.Close()
}

// TestPerIP: a second connection from one address is closed at once;
// another address is served; a slot comes back when the first closes.
func TestPerIP(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(raw, ListenerConfig{PerIP: 1})
	ch := accepted(t, l)
	addr := raw.Addr().String()
	dial(t, addr, "127.0.0.1")
	first := next(t, ch)
	over := dial(t, addr, "127.0.0.1")
	over.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection over the per-address limit read %d bytes", n)
	}
	other := dial(t, addr, "127.0.0.2")
	io.WriteString(other, "x")
	if c := next(t, ch); c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.2" {
		t.Fatalf("accepted %s, want 127.0.0.2", c.RemoteAddr())
	}
	first.Close()
	dial(t, addr, "127.0.0.1")
	if c := next(t, ch); c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.1" {
		t.Fatalf("accepted %s, want 127.0.0.1 again", c.RemoteAddr())
	}
}

func TestBody(t *testing.T) {
	var appSaw string
	app := balancer.HandlerFunc(func(x *balancer.Exchange) {
		b, err := io.ReadAll(x.Body)
		appSaw = string(b)
		status, text := 200, "ok"
		if errors.Is(err, h1.ErrBodyTooLarge) {
			status, text = 413, "too large"
			x.Refuse() // as the proxy does
		}
		resp := h1.Response{Status: status, ContentLength: int64(len(text))}
		if x.W.WriteHead(&resp) == nil {
			io.WriteString(x.W, text)
		}
	})
	link, err := NewBody(BodyConfig{Max: 10 << 10, Next: app})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: link, Listeners: []net.Listener{l}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background())
	t.Cleanup(func() { srv.Close() })
	for _, tc := range []struct {
		name, req, body string
		status          int
		appSaw          string
	}{
		{"under", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "ok", 200, "hello"},
		{"at", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10240\r\n\r\n" + strings.Repeat("a", 10240), "ok", 200, strings.Repeat("a", 10240)},
		{"over", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10241\r\n\r\n" + strings.Repeat("a", 10241),
			"berth: the request body is larger than the 10K this server accepts.\n", 413, ""},
		{"chunked over", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2801\r\n" + strings.Repeat("a", 10241) + "\r\n0\r\n\r\n", "too large", 413, strings.Repeat("a", 10240)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appSaw = ""
			c := dial(t, l.Addr().String(), "")
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(b) != tc.body || appSaw != tc.appSaw {
				t.Fatalf("got %d %q (app saw %d bytes), want %d %q (%d)", resp.StatusCode, b, len(appSaw), tc.status, tc.body, len(tc.appSaw))
			}
			if tc.status == 413 && !resp.Close {
				t.Error("413 without Connection: close")
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "10K": 10 << 10, "10kb": 10 << 10, "100M": 100 << 20, "2G": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "-1", "1T", "M", "1.5M", "99999999999G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if FormatSize(100<<20) != "100M" || FormatSize(1000) != "1000 bytes" {
		t.Error("FormatSize")
	}
}
