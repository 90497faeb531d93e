package balancer

import (
	"bufio"
	"net"
	"strconv"
	"testing"
)

// BenchmarkProxyHello measures berth's request path end to end over
// loopback: a keep-alive client, the front door, the proxy and a minimal
// HTTP/1.1 worker on a Unix socket answering 12 bytes. The worker and the
// client are as cheap as they can be, so the numbers are berth's own.
//
//	go test -run - -bench ProxyHello -benchmem -cpuprofile cpu.out ./balancer
func BenchmarkProxyHello(b *testing.B) {
	path := b.TempDir() + "/w.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go fakeWorker(l, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n")
	p := NewPool(PoolConfig{})
	p.Add(&Upstream{Name: "w1", Network: "unix", Addr: path})
	px, _ := NewProxy(ProxyConfig{Pool: p})
	fl, _ := net.Listen("tcp", "127.0.0.1:0")
	srv, _ := NewServer(ServerConfig{Handler: px, Listeners: []net.Listener{fl}})
	go srv.Serve(b.Context())
	defer srv.Close()

	c, err := net.Dial("tcp", fl.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	req := []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := skipResponse(r); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeWorker answers every request on every connection with resp.
func fakeWorker(l net.Listener, resp string) {
	out := []byte(resp)
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				if err := skipRequest(r); err != nil {
					return
				}
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}()
	}
}

// skipRequest reads a bodiless request head.
func skipRequest(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			return nil
		}
	}
}

// skipResponse reads a response with a Content-Length.
func skipResponse(r *bufio.Reader) error {
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && string(line[1:15]) == "ontent-Length:" {
			n, _ = strconv.Atoi(string(trimCRLF(line[15:])))
		}
	}
	_, err := r.Discard(n)
	return err
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[0] == ' ') {
		if b[0] == ' ' {
			b = b[1:]
		} else {
			b = b[:len(b)-1]
		}
	}
	return b
}
