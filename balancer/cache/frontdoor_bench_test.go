package cache

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"testing"

	"berth/balancer"
	"berth/balancer/h1"
)

// BenchmarkFrontDoorHit is a cache hit end to end over loopback: a
// keep-alive client, berth's front door, the cache link. The client runs in
// the same process, so cpu-ns/op counts its syscalls too; compare with
// BenchmarkFrontDoorDirect, where a link answers the same bytes itself.
func BenchmarkFrontDoorHit(b *testing.B) {
	c, _ := New(Config{})
	benchFrontDoor(b, c.Wrap(helloApp()))
	if s := c.Stats(); s.Misses != 1 {
		b.Fatalf("stats %+v", s)
	}
}

// BenchmarkFrontDoorDirect is the front door with a link that answers
// from memory without a cache: the floor under BenchmarkFrontDoorHit.
func BenchmarkFrontDoorDirect(b *testing.B) {
	base := fields("Content-Type", "text/plain; charset=utf-8", "Cache-Control", "public, max-age=3600",
		"Vary", "Accept-Encoding", "Date", "Sat, 28 Nov 2026 10:00:00 GMT", "ETag", `W/"c-abc"`, "Age", "0", "Cache-Status", "berth; hit")
	body := []byte("Hello World!")
	benchFrontDoor(b, balancer.HandlerFunc(func(x *balancer.Exchange) {
		resp := h1.Response{Minor: 1, Status: 200, ContentLength: 12, Header: base}
		x.W.WriteHead(&resp)
		x.W.Write(body)
	}))
}

func benchFrontDoor(b *testing.B, h balancer.Handler) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: h, Listeners: []net.Listener{l}})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(b.Context())
	b.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\nAccept-Encoding: gzip, br\r\n\r\n")
	r := bufio.NewReader(conn)
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readResponse(r); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // the miss that fills the cache
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for b.Loop() {
		roundTrip()
	}
	reportCPU(b, start)
}

// readResponse reads one response with a Content-Length body.
func readResponse(r *bufio.Reader) error {
	n := -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err := r.Discard(n)
	return err
}
