package loop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// newLoopWith is newLoop with a config.
func newLoopWith(t *testing.T, cfg Config) *Loop {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// needRing skips (fails under BERTH_TEST_STRICT) where the kernel gives
// no io_uring, and the loop then sends plainly.
func needRing(t *testing.T, l *Loop) {
	t.Helper()
	testenv.Need(t, l.Batching(), "this kernel gives the loop no io_uring (io_uring_disabled, or a seccomp filter): its sends are plain")
}

// Echoes over many connections at once, a large write that waits for
// room, and a write to a peer that left, with the sends batched through
// the ring and with plain sends: the same bytes and errors either way.
func TestSends(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			l := newLoopWith(t, Config{PlainSends: plain})
			if plain {
				if l.Batching() {
					t.Fatal("PlainSends set, and the loop batches its sends")
				}
			} else {
				needRing(t, l)
			}

			// Many connections echoing at once: a turn batches several.
			const conns, rounds = 20, 100
			if err := echoClients(t, l, conns, rounds); err != nil {
				t.Fatal(err)
			}

			// 4 MiB in one Write: the ring's send takes part, the next
			// finds the socket full (EAGAIN), the Task waits for room.
			bigWrite(t, l, 4<<20)

			// A peer that left: EPIPE, not a signal.
			fd, peer := pair(t)
			peer.Close()
			done := make(chan error, 1)
			l.Adopt(fd, func(_ *Task, c *Conn, _ error) {
				defer c.Close()
				_, err := c.Write([]byte("anyone there?"))
				done <- err
			})
			if err := within(t, done, 10*time.Second, "write to a closed peer"); !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write to a closed peer: %v, want EPIPE", err)
			}

			switch n := l.batched.Load() + l.alone.Load(); {
			case plain && n != 0:
				t.Errorf("%d sends were queued with PlainSends", n)
			case !plain && n < conns*rounds:
				t.Errorf("%d sends were queued, want at least the %d echoes", n, conns*rounds)
			}
		})
	}
}

// The sends of one turn go to the kernel together: Tasks started in the
// same turn, each writing at once, make one batch through the ring; a
// send alone in its turn is made with send(2).
func TestSendsOfATurnGoTogether(t *testing.T) {
	l := newLoopWith(t, Config{})
	needRing(t, l)

	const n = 16
	peers := make([]net.Conn, n)
	fds := make([]int, n)
	for i := range n {
		fds[i], peers[i] = pair(t)
	}
	// Adopted from one posted function, the n Tasks start in the same
	// later turn.
	l.Post(func() {
		for i, fd := range fds {
			l.Adopt(fd, func(_ *Task, c *Conn, _ error) {
				c.Write(fmt.Appendf(nil, "hello %02d", i))
			})
		}
	})
	for i, p := range peers {
		got := make([]byte, len("hello 00"))
		p.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(p, got); err != nil || string(got) != fmt.Sprintf("hello %02d", i) {
			t.Fatalf("conn %d read %q, %v", i, got, err)
		}
	}
	if b, a := l.batched.Load(), l.alone.Load(); b != n || a != 0 {
		t.Errorf("%d sends through the ring and %d alone, want the %d in one batch", b, a, n)
	}

	// One connection echoing: every turn has one send, made alone.
	l2 := newLoopWith(t, Config{})
	const rounds = 50
	if err := echoClients(t, l2, 1, rounds); err != nil {
		t.Fatal(err)
	}
	if b, a := l2.batched.Load(), l2.alone.Load(); b != 0 || a != rounds {
		t.Errorf("one echoing connection: %d sends through the ring and %d alone, want 0 and %d", b, a, rounds)
	}
}
