package uring

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"berth/packaging/testenv"
)

func newRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New(8)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		testenv.Need(t, false, "this kernel gives no io_uring: "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Two sends queued together on a socket that holds less than the first:
// when Submit returns both have their results, the first part of its
// bytes, the second EAGAIN (MSG_DONTWAIT: no poll armed in the ring).
// The loop engine resumes a turn's senders on that (DESIGN.md, "The
// system-call floor, and io_uring"); without the flag the second send
// stays pending (checked).
func TestSendsCompleteInsideSubmit(t *testing.T) {
	r := newRing(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	big := make([]byte, 8<<20) // more than the pair holds
	for i := range 2 {
		if !r.QueueSend(fds[0], big, uint64(i)) {
			t.Fatal("no room for two sends in a ring of 8")
		}
	}
	if r.Queued() != 2 {
		t.Fatalf("Queued %d, want 2", r.Queued())
	}
	if err := r.Submit(0); err != nil {
		t.Fatal(err)
	}
	if n := r.Ready(); n != 2 {
		t.Fatalf("%d of 2 sends completed when Submit returned", n)
	}
	res := map[uint64]int32{}
	r.Reap(func(e CQE) { res[e.UserData] = e.Res })
	runtime.KeepAlive(big)
	if first := res[0]; first <= 0 || int(first) >= len(big) {
		t.Errorf("the first send: %d, want part of %d bytes", first, len(big))
	}
	if second := res[1]; second != -int32(unix.EAGAIN) {
		t.Errorf("the second send, on a full socket: %d, want -EAGAIN (%d)", second, -int32(unix.EAGAIN))
	}
	if r.Ready() != 0 {
		t.Errorf("%d completions left after Reap", r.Ready())
	}
}

// A full submission queue says so, and Discard empties what was queued.
func TestQueueFullAndDiscard(t *testing.T) {
	r := newRing(t)
	p := []byte("x")
	n := 0
	for r.QueueSend(-1, p, 0) {
		n++
		if n > 1024 {
			t.Fatal("the queue never fills")
		}
	}
	if n != len(r.sqes) {
		t.Fatalf("queued %d sends, want the ring's %d entries", n, len(r.sqes))
	}
	r.Discard()
	if r.Queued() != 0 || !r.QueueSend(-1, p, 0) {
		t.Fatal("Discard left the queue full")
	}
	r.Discard()
}
