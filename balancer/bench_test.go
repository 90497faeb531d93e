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
	addr := benchFrontDoor(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(benchRequest); err != nil {
			b.Fatal(err)
		}
		if err := skipResponse(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyHelloParallel is BenchmarkProxyHello with 32 keep-alive
// clients per core at once, as wrk's c=64 on two cores.
func BenchmarkProxyHelloParallel(b *testing.B) {
	addr := benchFrontDoor(b)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(benchRequest); err != nil {
				b.Error(err)
				return
			}
			if err := skipResponse(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

var benchRequest = []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")

// benchFrontDoor starts a front door and proxy before two minimal workers
// and returns its address.
func benchFrontDoor(b *testing.B) string {
	p := NewPool(PoolConfig{})
	for _, name := range []string{"w1", "w2"} {
		path := b.TempDir() + "/" + name + ".sock"
		l, err := net.Listen("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		go fakeWorker(l, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n")
		p.Add(&Upstream{Name: name, Network: "unix", Addr: path})
	}
	px, _ := NewProxy(ProxyConfig{Pool: p})
	fl, _ := net.Listen("tcp", "127.0.0.1:0")
	srv, _ := NewServer(ServerConfig{Handler: px, Listeners: []net.Listener{fl}})
	go srv.Serve(b.Context())
	b.Cleanup(func() { srv.Close() })
	return fl.Addr().String()
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
