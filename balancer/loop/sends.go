package loop

// sends.go: the sends of a turn, batched. A Task that writes queues its
// send in the loop's io_uring and suspends; when the turn's events,
// posted functions and timers are done, the loop submits every queued
// send in one io_uring_enter, and resumes each Task with its result
// before it waits again. On this machine kind a system call costs over
// a microsecond, and one plain send per response also lets the reader it
// wakes preempt the loop at every send (DESIGN.md, "The system-call
// floor, and io_uring").

import (
	"net"
	"os"
	"syscall"

	"berth/balancer/loop/uring"
)

// ringEntries is the size of a loop's ring: a send per Task at most is
// queued, and a Task that finds the ring full sends plainly.
const ringEntries = 1024

// Batching reports whether the loop batches its sends through io_uring.
func (l *Loop) Batching() bool { return l.ring != nil }

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
		t.sendBuf = p
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
		if err := l.ring.Submit(len(batch)); err != nil {
			// Not expected once the ring is set up (the kernel took
			// its submissions before): fail these sends, not the loop,
			// and send plainly from now on.
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
			l.batched.Add(int64(len(batch)))
		}
		for i, t := range batch {
			batch[i] = nil
			l.resume(t)
		}
		l.sent = batch[:0]
	}
}
