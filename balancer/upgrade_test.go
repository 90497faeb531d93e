package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestUpgradePassesThrough(t *testing.T) {
	p := NewPool(PoolConfig{})
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
