package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/balancer/loop/uring"
)

// Both servers answer every request of a connection, pipelined ones too,
// with the response, and a closed connection does not stop them.
func TestServersAnswer(t *testing.T) {
	for _, mode := range []string{"epoll", "hybrid", "uring"} {
		t.Run(mode, func(t *testing.T) {
			if mode != "epoll" {
				if r, err := uring.New(8); err != nil {
					if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
						t.Skipf("no io_uring here: %v", err)
					}
					t.Fatal(err)
				} else {
					r.Close()
				}
			}
			ls, err := listenLoopback(1)
			if err != nil {
				t.Fatal(err)
			}
			l := ls[0]
			t.Cleanup(func() { l.Close() })
			sa, err := unix.Getsockname(int(l.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			// The server gets its own descriptor of the socket and never
			// returns; its goroutine ends with the test binary.
			sfd, err := unix.Dup(int(l.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- serveMode(mode, os.NewFile(uintptr(sfd), "listener")) }()
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}
			for round := range 2 { // the second connection comes after the first closed
				c, err := net.DialTCP("tcp", nil, addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
				br := bufio.NewReader(c)
				send := map[int]string{0: req + req, 2: req} // two pipelined, then one after their answers
				for i := range 3 {
					if _, err := io.WriteString(c, send[i]); err != nil {
						t.Fatal(err)
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						select {
						case serr := <-errc:
							t.Fatalf("connection %d, response %d: %v (the server ended: %v)", round, i, err, serr)
						default:
						}
						t.Fatalf("connection %d, response %d: %v", round, i, err)
					}
					body, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != 200 || string(body) != "hello world\n" {
						t.Fatalf("connection %d, response %d: %d %q", round, i, resp.StatusCode, body)
					}
				}
				c.Close()
			}
			if n := lateSends.Load(); n != 0 {
				t.Errorf("%d turns of sends had not completed when io_uring_enter returned", n)
			}
		})
	}
}

func TestParseWrk(t *testing.T) {
	out := "Running 8s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n" +
		"  541234 requests in 8.00s, 80.00MB read\nRequests/sec:  67654.25\nTransfer/sec:     10.00MB\n"
	n, rps, err := parseWrk(out)
	if err != nil || n != 541234 || rps != 67654.25 {
		t.Fatalf("got %v %v %v", n, rps, err)
	}
	if _, _, err := parseWrk("wrk: connection refused"); err == nil {
		t.Fatal("no error for output without a summary")
	}
}
