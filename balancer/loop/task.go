package loop

import (
	"fmt"
	"iter"
	"net"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// What a Task's coroutine hands its driver when it suspends.
type op uint8

const (
	opWait   op = iota // waiting on a Conn (Task.on, Task.dir)
	opDetach           // to be driven by a goroutine of its own
	opAttach           // to be driven by the loop again
	opSend             // its send is queued in the loop's ring (Task.sendRes)
)

// Task is a coroutine run by a Loop: one connection's serve code, or any
// code that waits on the loop's Conns.
type Task struct {
	l     *Loop
	next  func() (op, bool)
	stop  func()
	yield func(op) bool

	// While attached and waiting: the Conn and direction it waits on.
	on  *Conn
	dir int

	// While its send is queued in the loop's ring: the bytes the ring
	// holds the address of, their socket, and the send's result, set
	// before the loop resumes it (bytes sent, or -errno). Keeping the bytes in a field of
	// the Task is what puts every buffer a loop Conn sends on the heap:
	// the compiler then never leaves one on a coroutine's stack, which
	// the collector may move (shrink) while the Task is suspended and
	// the kernel has yet to read it.
	sendBuf []byte
	sendFd  int
	sendRes int32

	detached atomic.Bool
}

// start creates a Task for fn and runs it to its first wait. On the loop
// goroutine only.
func (l *Loop) start(fn func(t *Task)) *Task {
	t := &Task{l: l}
	t.next, t.stop = iter.Pull(func(yield func(op) bool) {
		t.yield = yield
		fn(t)
	})
	l.tasks[t] = struct{}{}
	l.resume(t)
	return t
}

// resume runs t until it waits, detaches or returns. On the loop
// goroutine only.
func (l *Loop) resume(t *Task) {
	o, ok := t.next()
	switch {
	case !ok:
		l.finish(t)
	case o == opDetach:
		t.detached.Store(true)
		go t.drive()
	}
}

// finish forgets a Task that returned. On the loop goroutine only.
func (l *Loop) finish(t *Task) {
	if _, ok := l.tasks[t]; ok {
		delete(l.tasks, t)
		l.load.Add(-1)
	}
}

// drive runs a detached Task on its own goroutine until it attaches
// again or returns.
func (t *Task) drive() {
	for {
		o, ok := t.next()
		switch {
		case !ok:
			t.l.Post(func() { t.l.finish(t) })
			return
		case o == opAttach:
			t.detached.Store(false)
			t.l.Post(func() { t.l.resume(t) })
			return
		default:
			panic(fmt.Sprintf("loop: a detached Task suspended with %d", o))
		}
	}
}

// Loop returns the loop t runs on.
func (t *Task) Loop() *Loop { return t.l }

// Detach lets the loop go on without t: from now on a goroutine of its
// own drives it, and its Conns wait with poll(2). Call it before a wait
// that is not on a Conn (a channel, a lock held across I/O), which would
// otherwise stall the loop and every other Task on it.
func (t *Task) Detach() {
	if !t.detached.Load() {
		t.yield(opDetach)
	}
}

// Attach hands t back to its loop.
func (t *Task) Attach() {
	if t.detached.Load() {
		t.yield(opAttach)
	}
}

// Adopt registers a connected socket's descriptor with the loop and runs
// fn on it as a new Task, the Conn bound to it. If registering fails, fn
// runs with a nil Conn and the error, and fd is closed. It may be called
// from any goroutine; the loop owns fd from then on.
func (l *Loop) Adopt(fd int, fn func(t *Task, c *Conn, err error)) {
	l.load.Add(1) // now, so that the next connection sees it
	l.Post(func() {
		l.start(func(t *Task) {
			c, err := l.register(fd)
			if err != nil {
				unix.Close(fd)
				fn(t, nil, err)
				return
			}
			c.Bind(t)
			fn(t, c, nil)
		})
	})
}

// Dial connects to a Unix or TCP address from t, which must be attached,
// and returns the Conn bound to t.
func (t *Task) Dial(network, address string) (*Conn, error) {
	sa, family, err := sockaddr(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	if family != unix.AF_UNIX {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	err = unix.Connect(fd, sa)
	c, rerr := t.l.register(fd)
	if rerr != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Err: rerr}
	}
	c.Bind(t)
	if err == unix.EINPROGRESS || err == unix.EAGAIN {
		// Connecting: writable once done, SO_ERROR says how it went.
		if werr := c.wait(dirWrite); werr != nil {
			c.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Err: werr}
		}
		var serr int
		serr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && serr != 0 {
			err = unix.Errno(serr)
		}
	}
	if err != nil {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	c.addrs()
	return c, nil
}

func sockaddr(network, address string) (unix.Sockaddr, int, error) {
	switch network {
	case "unix":
		return &unix.SockaddrUnix{Name: address}, unix.AF_UNIX, nil
	case "tcp", "tcp4", "tcp6":
		a, err := net.ResolveTCPAddr(network, address)
		if err != nil {
			return nil, 0, err
		}
		if ip4 := a.IP.To4(); ip4 != nil {
			sa := &unix.SockaddrInet4{Port: a.Port}
			copy(sa.Addr[:], ip4)
			return sa, unix.AF_INET, nil
		}
		sa := &unix.SockaddrInet6{Port: a.Port}
		copy(sa.Addr[:], a.IP.To16())
		return sa, unix.AF_INET6, nil
	}
	return nil, 0, net.UnknownNetworkError(network)
}
