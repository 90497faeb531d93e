package sockio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/balancer/loop"
	"berth/packaging/testenv"
)

// echo answers each read of peer with what it read, until it ends.
func echo(peer net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := peer.Read(buf)
		if err != nil {
			return
		}
		if _, err := peer.Write(buf[:n]); err != nil {
			return
		}
	}
}

// within fails t unless f returns within 10 s: a lost readiness notice
// shows as a hang.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not finish", what)
	}
}

// The point of Serve and of Stage: in a conversation where the two sides
// take turns, a read after berth's turn waits for the poller instead of
// first trying a socket that is empty. Without that, nearly every turn
// costs two read system calls (EAGAIN, then the data).
func TestTurnsCostOneReadEach(t *testing.T) {
	const turns = 300
	msg := []byte("GET / HTTP/1.1\r\n\r\n")
	for _, mode := range []string{"serve", "stage"} {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(mode+"/"+network, func(t *testing.T) {
				s, peer := pair(t, network)
				go echo(peer)
				buf := make([]byte, 4096) // more than an answer: each read is short
				check := func(n int, err error) bool {
					if err != nil || n != len(msg) {
						t.Errorf("Read = %d, %v; want the %d bytes echoed", n, err, len(msg))
						return false
					}
					return true
				}
				if mode == "serve" {
					done, sent := 0, false
					within(t, "Serve", func() {
						err := s.Serve(func() Turn {
							for done < turns {
								if !sent {
									s.Write(msg)
									sent = true
								}
								n, err := s.Read(buf)
								if err == ErrWouldBlock {
									return Wait
								}
								if !check(n, err) {
									return Leave
								}
								sent = false
								done++
							}
							return Leave
						})
						if err != nil {
							t.Errorf("Serve = %v", err)
						}
					})
				} else {
					for range turns {
						s.Stage(msg)
						if !check(s.Read(buf)) {
							break
						}
						if n, err := s.Staged(); n != len(msg) || err != nil {
							t.Fatalf("Staged = %d, %v; want %d, nil", n, err, len(msg))
						}
					}
				}
				// The first turn tries; spurious notices may cost a few.
				if s.reads > turns+turns/10 {
					t.Fatalf("%d turns made %d read system calls; want about one per turn", turns, s.reads)
				}
			})
		}
	}
}

// Bytes that arrive while berth is not reading are not lost, whether
// they came before berth's turn (a pipelined request) or after it: the
// raw read Serve holds keeps the poller's notice of them. So is the end
// of the stream after a turn.
func TestServeKeepsWhatArrivesBetweenReads(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			s, peer := pair(t, network)
			peerSay := make(chan string)
			peerDone := make(chan struct{})
			go func() {
				for w := range peerSay {
					if w == "" {
						peer.Close()
					} else {
						peer.Write([]byte(w))
					}
					peerDone <- struct{}{}
				}
			}()
			say := func(w string) { peerSay <- w; <-peerDone }
			peerHears := func(want string) {
				got := make([]byte, len(want))
				if _, err := io.ReadFull(peer, got); err != nil || string(got) != want {
					t.Errorf("peer read %q, %v; want %q", got, err, want)
				}
			}
			say("a")
			var got []string
			step := 0
			buf := make([]byte, 64)
			within(t, "Serve", func() {
				err := s.Serve(func() Turn {
					for {
						n, err := s.Read(buf)
						if err == ErrWouldBlock {
							return Wait
						}
						if err != nil {
							got = append(got, err.Error())
							return Leave
						}
						got = append(got, string(buf[:n]))
						switch step++; step {
						case 1: // "a": berth answers, the peer speaks again
							s.Write([]byte("w"))
							peerHears("w")
							say("b")
						case 2: // "b": the peer speaks again before berth's turn (pipelined)
							say("c")
							s.Write([]byte("x"))
						case 3: // "c": the peer answers after berth's turn
							s.Write([]byte("y"))
							peerHears("xy")
							say("d")
						case 4: // "d": the peer hangs up after berth's turn
							s.Write([]byte("z"))
							peerHears("z")
							say("")
						}
					}
				})
				if err != nil {
					t.Errorf("Serve = %v", err)
				}
			})
			if want := []string{"a", "b", "c", "d", "EOF"}; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("Serve's reads got %q; want %q", got, want)
			}
			close(peerSay)
		})
	}
}

// A client that sends one request and shuts its side down (the end
// arrives with the request) is answered and then seen to end at once:
// the read after the first answer tries the socket.
func TestServeSeesAOneRequestClientsEnd(t *testing.T) {
	s, peer := pair(t, "tcp")
	peer.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	peer.(*net.TCPConn).CloseWrite()
	var got []string
	within(t, "Serve after the client's end", func() {
		s.Serve(func() Turn {
			buf := make([]byte, 64)
			for {
				_, err := s.Read(buf)
				switch {
				case err == ErrWouldBlock:
					return Wait
				case err != nil:
					got = append(got, err.Error())
					return Leave
				}
				got = append(got, "request")
				s.Write([]byte("answer"))
			}
		})
	})
	if strings.Join(got, " ") != "request EOF" {
		t.Fatalf("Serve's reads got %q; want a request, then EOF", got)
	}
}

// Under TLS, requests are read inside Serve through the tls.Conn: a
// record that is not all there yet stays in tls.Conn (ErrWouldBlock is
// Temporary, so tls.Conn does not keep it as the connection's error),
// and the turns still cost about one socket read each.
func TestServeUnderTLS(t *testing.T) {
	const turns = 200
	s, peer := pair(t, "tcp")
	cert, roots := testCert(t)
	server := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}})
	client := tls.Client(peer, &tls.Config{ServerName: "localhost", RootCAs: roots})
	client.SetDeadline(time.Now().Add(10 * time.Second))
	hs := make(chan error, 1)
	go func() { hs <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	if Under(server) != s {
		t.Fatal("Under(tls.Conn) is not the sockio.Conn under it")
	}
	go echo(client)
	msg := bytes.Repeat([]byte("x"), 3000) // a record that may come in pieces
	buf := make([]byte, 8192)
	reads := s.reads
	done, sent, got := 0, false, 0
	within(t, "Serve under TLS", func() {
		err := s.Serve(func() Turn {
			for done < turns {
				if !sent {
					server.Write(msg)
					sent = true
				}
				n, err := server.Read(buf)
				if err == ErrWouldBlock {
					return Wait
				}
				if err != nil {
					t.Errorf("Read under TLS = %v", err)
					return Leave
				}
				if got += n; got == len(msg) {
					got, sent = 0, false
					done++
				}
			}
			return Leave
		})
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	if done != turns {
		t.Fatalf("%d of %d turns done", done, turns)
	}
	if n := s.reads - reads; n > turns+turns/2 {
		t.Fatalf("%d turns under TLS made %d socket reads; want about one per turn", turns, n)
	}
}

// Close from another goroutine while Serve waits ends the wait and
// closes the socket.
func TestCloseWhileServeWaits(t *testing.T) {
	s, peer := pair(t, "tcp")
	served := make(chan error)
	go func() {
		served <- s.Serve(func() Turn {
			if _, err := s.Read(make([]byte, 8)); err == ErrWouldBlock {
				return Wait
			}
			return Leave
		})
	}()
	within(t, "Close", func() { s.Close() })
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve after Close = %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end Serve's wait")
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peer.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("peer's Read after Close = %d, %v; want 0, EOF", n, err)
	}
}

// Close during a turn (berth waits for a worker; shutdown closes its
// connections) does not wait for the turn: the peer sees the end at
// once, the turn's writes fail, and Serve closes the descriptor when the
// turn returns.
func TestCloseDuringATurn(t *testing.T) {
	s, peer := pair(t, "tcp")
	peer.Write([]byte("a"))
	inTurn, release := make(chan struct{}), make(chan struct{})
	var writeErr error
	served := make(chan error)
	go func() {
		served <- s.Serve(func() Turn {
			if _, err := s.Read(make([]byte, 8)); err == ErrWouldBlock {
				return Wait
			}
			close(inTurn)
			<-release
			_, writeErr = s.Write([]byte("answer"))
			return Wait
		})
	}()
	<-inTurn
	within(t, "Close during a turn", func() { s.Close() })
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peer.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("peer's Read after Close = %d, %v; want 0, EOF", n, err)
	}
	close(release)
	if err := <-served; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after Close = %v; want net.ErrClosed", err)
	}
	if writeErr == nil {
		t.Fatal("a write after Close succeeded")
	}
	rc, _ := s.Conn.(*net.TCPConn).SyscallConn()
	if err := rc.Control(func(uintptr) {}); err == nil {
		t.Fatal("the descriptor is still open after Serve returned")
	}
}

// A read deadline ends Serve's wait, with a timeout error.
func TestServeDeadline(t *testing.T) {
	s, peer := pair(t, "unix")
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	err := s.Serve(func() Turn {
		if _, err := s.Read(make([]byte, 8)); err == ErrWouldBlock {
			return Wait
		}
		return Leave
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Serve past the deadline = %v; want a timeout", err)
	}
	// The connection goes on.
	s.SetReadDeadline(time.Time{})
	peer.Write([]byte("late"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "late" {
		t.Fatalf("Read after Serve = %q, %v", got, err)
	}
}

// What is staged goes out whole even when it is more than the socket
// buffer holds; what does not fit is written as Write would.
func TestStageMoreThanTheSocketHolds(t *testing.T) {
	s, peer := pair(t, "unix")
	stageMoreThanTheSocketHolds(t, s, peer)
}

// stageMoreThanTheSocketHolds stages 4 MiB on s and checks that peer
// got them whole. It reports with t.Errorf: it runs on a loop too.
func stageMoreThanTheSocketHolds(t *testing.T, s *Conn, peer net.Conn) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		if bytes.Equal(b, big) {
			peer.Write([]byte("ok"))
		} else {
			peer.Write([]byte("no"))
		}
	}()
	s.Stage(big)
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 2)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "ok" {
		t.Errorf("answer to 4 MiB staged: %q, %v; want ok", got, err)
		return
	}
	if n, err := s.Staged(); n != len(big) || err != nil {
		t.Errorf("Staged = %d, %v; want %d, nil", n, err, len(big))
	}
}

// A staged write that fails is reported by the Read as a write error,
// and by Staged with what went out.
func TestStageToAClosedPeer(t *testing.T) {
	s, peer := pair(t, "unix")
	stageToAClosedPeer(t, s, peer)
}

// stageToAClosedPeer closes peer, stages on s and checks the errors. It
// reports with t.Errorf: it runs on a loop too.
func stageToAClosedPeer(t *testing.T, s *Conn, peer net.Conn) {
	peer.Close()
	s.Stage([]byte("GET / HTTP/1.1\r\n\r\n"))
	_, err := s.Read(make([]byte, 8))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Read after staging to a closed peer = %v; want a write error, EPIPE", err)
	}
	if n, err := s.Staged(); n != 0 || !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Staged = %d, %v; want 0, EPIPE", n, err)
	}
}

// onLoop runs f in a Task of a new loop (the loop engine's), with s a
// Conn over a loop.Conn of a Unix socket pair whose other end is peer. f
// runs on the loop's goroutine: it reports with t.Errorf, never t.Fatal.
// It returns the number of sends the loop queued for the end of a turn,
// where a loop Conn's sends go when the kernel gives the loop a ring.
func onLoop(t *testing.T, f func(s *Conn, peer net.Conn)) (queued int64) {
	t.Helper()
	l, err := loop.New(loop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testenv.Need(t, l.Batching(), "this kernel gives the loop no io_uring (io_uring_disabled, or a seccomp filter): its sends are plain")
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fl := os.NewFile(uintptr(fds[1]), "peer")
	peer, err := net.FileConn(fl)
	fl.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	done := make(chan struct{})
	l.Adopt(fds[0], func(_ *loop.Task, c *loop.Conn, err error) {
		defer close(done)
		if err != nil {
			t.Error(err)
			return
		}
		s := New(c)
		defer s.Close()
		f(s, peer)
	})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the Task on the loop did not finish in 20 s")
	}
	return l.SendsQueued()
}

// Over the loop engine's Conns, what is staged leaves with the loop's
// other sends at the end of the turn, and the read after it still waits
// for the poller instead of trying an empty socket; a staged write that
// does not fit, or fails, is reported as over a net.Conn.
func TestStageOnALoop(t *testing.T) {
	msg := []byte("GET / HTTP/1.1\r\n\r\n")
	t.Run("turns", func(t *testing.T) {
		const turns = 300
		var reads int
		queued := onLoop(t, func(s *Conn, peer net.Conn) {
			go echo(peer)
			buf := make([]byte, 4096)
			for i := range turns {
				s.Stage(msg)
				if n, err := s.Read(buf); err != nil || n != len(msg) {
					t.Errorf("turn %d: Read = %d, %v; want the %d bytes echoed", i, n, err, len(msg))
					return
				}
				if n, err := s.Staged(); n != len(msg) || err != nil {
					t.Errorf("turn %d: Staged = %d, %v; want %d, nil", i, n, err, len(msg))
					return
				}
			}
			reads = s.reads
		})
		if queued < turns {
			t.Errorf("%d sends queued for the turn's end, want the %d staged", queued, turns)
		}
		if reads > turns+turns/10 {
			t.Errorf("%d turns made %d read system calls; want about one per turn", turns, reads)
		}
	})
	t.Run("more than the socket holds", func(t *testing.T) {
		onLoop(t, func(s *Conn, peer net.Conn) { stageMoreThanTheSocketHolds(t, s, peer) })
	})
	t.Run("closed peer", func(t *testing.T) {
		onLoop(t, func(s *Conn, peer net.Conn) { stageToAClosedPeer(t, s, peer) })
	})
}
