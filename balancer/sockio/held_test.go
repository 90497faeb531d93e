package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// heldPair is pair with the client end's reads held (HoldReads).
func heldPair(t *testing.T, network string) (*Conn, net.Conn) {
	t.Helper()
	s, peer := pair(t, network)
	s.HoldReads = true
	return s, peer
}

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

// readExactly reads len(want) bytes from s and compares them.
func readExactly(t *testing.T, s *Conn, want string) {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost notice shows as a timeout, not a hang
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// The point of the held read and of Stage: in a conversation where the
// two sides take turns, a read after berth's turn waits for the poller
// instead of first trying a socket that is empty. Without that, nearly
// every turn costs two read system calls (EAGAIN, then the data).
func TestTurnsCostOneReadEach(t *testing.T) {
	const turns = 300
	for _, mode := range []string{"held", "stage"} {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(mode+"/"+network, func(t *testing.T) {
				s, peer := pair(t, network)
				s.HoldReads = mode == "held"
				go echo(peer)
				msg := []byte("GET / HTTP/1.1\r\n\r\n")
				buf := make([]byte, 4096) // more than an answer: each read is short
				for range turns {
					if mode == "held" {
						if _, err := s.Write(msg); err != nil {
							t.Fatal(err)
						}
					} else {
						s.Stage(msg)
					}
					n, err := s.Read(buf)
					if err != nil || n != len(msg) {
						t.Fatalf("Read = %d, %v; want the %d bytes echoed", n, err, len(msg))
					}
					if mode == "stage" {
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
// they came before or after berth's turn: the held read keeps the
// poller's notice of them.
func TestHeldReadKeepsWhatArrivesBetweenReads(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			s, peer := heldPair(t, network)
			peer.Write([]byte("a"))
			readExactly(t, s, "a") // short: the socket is empty after it

			// The peer speaks before berth's turn (a pipelined request)...
			peer.Write([]byte("b"))
			s.Write([]byte("x"))
			readExactly(t, s, "b")

			// ...and after it, answering.
			s.Write([]byte("y"))
			got := make([]byte, 2)
			if _, err := io.ReadFull(peer, got); err != nil {
				t.Fatal(err)
			}
			peer.Write([]byte("c"))
			readExactly(t, s, "c")

			// The end of the stream after a turn.
			s.Write([]byte("z"))
			if _, err := io.ReadFull(peer, got[:1]); err != nil {
				t.Fatal(err)
			}
			peer.Close()
			if n, err := s.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

// Close from another goroutine, while no Read is in progress but the
// held read holds the socket, closes it at once (the peer sees the end)
// and later Reads fail.
func TestCloseBetweenHeldReads(t *testing.T) {
	s, peer := heldPair(t, "tcp")
	peer.Write([]byte("a"))
	readExactly(t, s, "a")
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the held read")
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peer.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("peer's Read after Close = %d, %v; want 0, EOF", n, err)
	}
	if _, err := s.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v; want net.ErrClosed", err)
	}
}

func TestCloseBreaksAHeldRead(t *testing.T) {
	s, peer := heldPair(t, "unix")
	peer.Write([]byte("a"))
	readExactly(t, s, "a")
	s.Write([]byte("x")) // the next read waits without trying
	done := make(chan error)
	go func() {
		_, err := s.Read(make([]byte, 8))
		done <- err
	}()
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a held Read")
	}
}

// A deadline ends the held raw read; the next Read begins another.
func TestHeldReadAfterADeadline(t *testing.T) {
	s, peer := heldPair(t, "tcp")
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a timeout", err)
	}
	peer.Write([]byte("late"))
	readExactly(t, s, "late")
}

// Detach ends the held read, so the net.Conn can be read directly (a
// tunnel that splices).
func TestDetach(t *testing.T) {
	s, peer := heldPair(t, "tcp")
	peer.Write([]byte("a"))
	readExactly(t, s, "a")
	c := s.Detach()
	peer.Write([]byte("raw"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "raw" {
		t.Fatalf("reading the detached net.Conn: %q, %v", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after Detach = %v", err)
	}
}

// What is staged goes out whole even when it is more than the socket
// buffer holds; what does not fit is written as Write would.
func TestStageMoreThanTheSocketHolds(t *testing.T) {
	s, peer := pair(t, "unix")
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
	readExactly(t, s, "ok")
	if n, err := s.Staged(); n != len(big) || err != nil {
		t.Fatalf("Staged = %d, %v; want %d, nil", n, err, len(big))
	}
}

// A staged write that fails is reported by the Read as a write error,
// and by Staged with what went out.
func TestStageToAClosedPeer(t *testing.T) {
	s, peer := pair(t, "unix")
	peer.Close()
	s.Stage([]byte("GET / HTTP/1.1\r\n\r\n"))
	_, err := s.Read(make([]byte, 8))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Read after staging to a closed peer = %v; want a write error, EPIPE", err)
	}
	if n, err := s.Staged(); n != 0 || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Staged = %d, %v; want 0, EPIPE", n, err)
	}
}
