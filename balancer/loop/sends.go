package loop

// sends.go: the sends of a turn, batched. A Task that writes queues its
// send in the loop's io_uring and suspends; when the turn's events,
// posted functions and timers are done, the loop submits every queued
// send in one io_uring_enter (a send alone in its turn, with send(2),
// which costs less), and resumes each Task with its result before it
// waits again. On this machine kind a system call costs over
// a microsecond, and one plain send per response also lets the reader it
// wakes preempt the loop at every send (DESIGN.md, "The system-call
// floor, and io_uring").

import (
	"net"
	"os"
	"syscall"
	"unsafe"

	"berth/balancer/loop/uring"
)

// ringEntries is the size of a loop's ring: a send per Task at most is
// queued, and a Task that finds the ring full sends plainly.
const ringEntries = 1024

// Batching reports whether the loop batches its sends through io_uring.
func (l *Loop) Batching() bool { return l.ring != nil }

// NoRing tells why a loop that was to batch its sends has no ring: the
// kernel's refusal (io_uring_disabled, a seccomp filter such as
// systemd's SystemCallFilter=), nil otherwise.
func (l *Loop) NoRing() error { return l.ringErr }

// SendsQueued reports how many sends the loop's Tasks queued for the end
// of a turn (through the ring, or alone in their turn with send(2)).
func (l *Loop) SendsQueued() int64 { return l.batched.Load() + l.alone.Load() }

// send writes all of p as Write does. Made by an attached Task of the
// loop, each try goes through the ring (see the file's comment); a
// detached Task, a loop without a ring or a full ring sends plainly.
func (c *Conn) send(p []byte) (int, error) {
	l := c.l
	t := c.task[dirWrite]
	if l.ring == nil || t == nil || t.detached.Load() || len(p) == 0 {
		return c.plainWrite(p)
	}
	if !c.incref() {
		return 0, c.opError("write", net.ErrClosed)
	}
	defer c.decref() // the descriptor outlives the queued send
	n := 0
	for n < len(p) {
		if !l.ring.QueueSend(c.fd, p[n:], uint64(len(l.sending))) {
			k, err := c.plainWrite(p[n:])
			return n + k, err
		}
		l.sending = append(l.sending, t)
		t.sendBuf, t.sendFd = p[n:], c.fd
		ok := t.yield(opSend)
		t.sendBuf = nil
		if !ok {
			return n, c.opError("write", ErrClosed)
		}
		switch r := t.sendRes; {
		case r > 0:
			n += int(r)
		case r == -int32(syscall.EAGAIN):
			if err := c.wait(dirWrite); err != nil {
				return n, c.opError("write", err)
			}
		case r == -int32(syscall.EINTR):
		case r == 0:
			return n, c.opError("write", os.NewSyscallError("write", syscall.EIO)) // no progress on a non-empty send
		default:
			return n, c.opError("write", os.NewSyscallError("write", syscall.Errno(-r)))
		}
	}
	return n, nil
}

// flushSends submits the queued sends and resumes their Tasks with the
// results, until no resumed Task queued another. On the loop goroutine,
// outside any Task.
func (l *Loop) flushSends() {
	for l.ring != nil && len(l.sending) > 0 {
		batch := l.sending
		l.sending, l.sent = l.sent[:0], nil
		// The counts go first: a test reads them once its peer has
		// the bytes, which can be before the call returns.
		if len(batch) == 1 && l.ring.Queued() == 1 {
			// One send alone: send(2) costs less than io_uring_enter
			// with one entry (which hello c=1 pays per request), and
			// has its result at once as the ring's send would.
			l.ring.Discard()
			l.alone.Add(1)
			batch[0].sendRes = sendNow(batch[0].sendFd, batch[0].sendBuf)
		} else if l.batched.Add(int64(len(batch))); l.ring.Submit(len(batch)) != nil {
			// Not expected once the ring is set up (the kernel took
			// its submissions before): fail these sends, not the loop,
			// and send plainly from now on.
			l.batched.Add(-int64(len(batch)))
			for _, t := range batch {
				t.sendRes = -int32(syscall.EIO)
			}
			l.ring.Close()
			l.ring = nil
		} else {
			l.ring.Reap(func(e uring.CQE) {
				if e.UserData < uint64(len(batch)) {
					batch[e.UserData].sendRes = e.Res
				}
			})
		}
		for i, t := range batch {
			batch[i] = nil
			l.resume(t)
		}
		l.sent = batch[:0]
	}
}

// sendNow is the ring's send made with one send(2): MSG_DONTWAIT and
// MSG_NOSIGNAL, the result as a completion gives it (bytes sent, or
// -errno).
func sendNow(fd int, p []byte) int32 {
	for {
		r, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			return int32(r)
		case syscall.EINTR:
			continue
		}
		return -int32(errno)
	}
}
