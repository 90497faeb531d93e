package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoUpgradeWorker is a worker that switches to the "echo" protocol:
// each line it reads comes back prefixed with "echo: ".
func echoUpgradeWorker(t *testing.T) *Upstream {
	t.Helper()
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", 400)
			return
		}
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString("echo: " + line)
			rw.Flush()
		}
	})
	return up
}

func TestUpgradePassesThrough(t *testing.T) {
	p := NewPool(PoolConfig{})
	up := echoUpgradeWorker(t)
	p.Add(up)
	s := serve(t, p)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"one", "two"} {
		fmt.Fprintf(c, "%s\n", msg)
		got, err := r.ReadString('\n')
		if err != nil || got != "echo: "+msg+"\n" {
			t.Fatalf("round trip %q: got %q, %v", msg, got, err)
		}
	}
}

func TestConnectionsToWorkersAreReused(t *testing.T) {
	p := NewPool(PoolConfig{})
	var conns atomic.Int32
	path := t.TempDir() + "/w1.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.Add(&Upstream{Name: "w1", Network: "unix", Addr: path})
	s := serve(t, p)
	for i := 0; i < 20; i++ {
		if code, _ := do(t, "GET", s.URL, ""); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d connections to the worker, want 1", n)
	}
}

// On the event loops an idle tunnel holds no thread: both directions are
// Tasks of the client's loop. (Detached, each would block a thread in
// poll(2) per direction.)
func TestIdleTunnelsHoldNoThreads(t *testing.T) {
	// On the loops whatever -engine says (this package's tests do not
	// run in parallel).
	saved := *engine
	*engine = "loop"
	t.Cleanup(func() { *engine = saved })
	p := NewPool(PoolConfig{})
	up := echoUpgradeWorker(t)
	p.Add(up)
	s := serve(t, p)
	const n = 40
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	roundTrip := func(c net.Conn, r *bufio.Reader, msg string) {
		t.Helper()
		fmt.Fprintf(c, "%s\n", msg)
		if got, err := r.ReadString('\n'); err != nil || got != "echo: "+msg+"\n" {
			t.Fatalf("round trip %q: got %q, %v", msg, got, err)
		}
	}
	before := threads(t)
	var readers []*bufio.Reader
	for range n {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		roundTrip(c, r, "hello")
		readers = append(readers, r)
	}
	if grew := threads(t) - before; grew >= n/2 {
		t.Fatalf("%d idle tunnels grew the process by %d threads", n, grew)
	}
	for i, c := range conns {
		roundTrip(c, readers[i], "again")
	}
}

// threads is the process's thread count, from /proc.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("thread count: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}
