package loop

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Directions of a wait.
const (
	dirRead = iota
	dirWrite
)

// Conn is a socket registered in a Loop: a net.Conn whose reads and
// writes, made by the Task it is bound to, wait by yielding to the loop.
// Close, SetDeadline and its variants may be called from any goroutine;
// Read and Write only from its Task (one Read and one Write at a time, as
// with a net.Conn).
type Conn struct {
	l    *Loop
	fd   int
	slot uint32
	gen  uint32

	task [2]*Task // the Tasks that read and write it, by direction

	ready    atomic.Uint32   // directions epoll reported ready since the last wait
	deadline [2]atomic.Int64 // Unix nanoseconds, 0 for none
	tix      [2]int          // its timers' places in the loop's heap, -1 for none

	closed    atomic.Bool
	refs      atomic.Int32 // operations using fd, plus one until Close
	destroyed atomic.Bool

	local, remote net.Addr
	netw          string
}

// Bind makes t the Task that reads and writes c.
func (c *Conn) Bind(t *Task) { c.task = [2]*Task{t, t} }

// BindReader makes t the Task that reads c, and BindWriter the one that
// writes it: for two Tasks that copy both ways at once. Both Tasks must
// be on c's loop, and neither may be waiting on c.
func (c *Conn) BindReader(t *Task) { c.task[dirRead] = t }

// BindWriter: see BindReader.
func (c *Conn) BindWriter(t *Task) { c.task[dirWrite] = t }

// addrs reads the socket's addresses.
func (c *Conn) addrs() {
	if sa, err := unix.Getsockname(c.fd); err == nil {
		c.local = sockaddrToAddr(sa)
	}
	if sa, err := unix.Getpeername(c.fd); err == nil {
		c.remote = sockaddrToAddr(sa)
	}
	c.netw = "tcp"
	if _, ok := c.local.(*net.UnixAddr); ok {
		c.netw = "unix"
	}
}

func sockaddrToAddr(sa unix.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	return nil
}

// wait waits until the socket may be ready in direction d, the deadline
// passes (os.ErrDeadlineExceeded), or c or its loop is closed.
func (c *Conn) wait(d int) error {
	t := c.task[d]
	if t == nil {
		return errNoTask
	}
	bit := uint32(1) << d
	for {
		if c.closed.Load() {
			return net.ErrClosed
		}
		if c.ready.Load()&bit != 0 {
			c.ready.And(^bit)
			return nil
		}
		dl := c.deadline[d].Load()
		if dl != 0 && time.Now().UnixNano() >= dl {
			return os.ErrDeadlineExceeded
		}
		if t.detached.Load() {
			return c.pollWait(d)
		}
		if dl != 0 {
			c.l.setTimer(c, d, dl)
		}
		t.on, t.dir = c, d
		ok := t.yield(opWait)
		t.on = nil
		if !ok {
			return ErrClosed
		}
	}
}

var errNoTask = &net.OpError{Op: "wait", Err: os.NewSyscallError("loop", syscall.EINVAL)}

// pollWait is a detached Task's wait: poll(2) on the one descriptor,
// blocking its thread, in slices short enough to see a deadline moved or
// a Close from elsewhere.
func (c *Conn) pollWait(d int) error {
	ev := int16(unix.POLLIN | unix.POLLRDHUP)
	if d == dirWrite {
		ev = unix.POLLOUT
	}
	for {
		ms := 100
		if dl := c.deadline[d].Load(); dl != 0 {
			left := dl - time.Now().UnixNano()
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			ms = min(ms, int((left+int64(time.Millisecond)-1)/int64(time.Millisecond)))
		}
		fds := [1]unix.PollFd{{Fd: int32(c.fd), Events: ev}}
		n, err := unix.Poll(fds[:], ms)
		if c.closed.Load() {
			return net.ErrClosed
		}
		if err == nil && n > 0 {
			return nil
		}
		if err != nil && err != unix.EINTR {
			return err
		}
	}
}

// incref takes a reference for an operation on fd; false once closed.
func (c *Conn) incref() bool {
	if c.closed.Load() {
		return false
	}
	c.refs.Add(1)
	if c.closed.Load() {
		c.decref()
		return false
	}
	return true
}

// decref drops a reference; the last one after Close closes fd.
func (c *Conn) decref() {
	if c.refs.Add(-1) == 0 && c.destroyed.CompareAndSwap(false, true) {
		unix.Close(c.fd)
		c.l.Post(func() { c.l.release(c) })
	}
}

// Close closes the connection. A Task waiting on it sees net.ErrClosed;
// the descriptor is closed once no operation uses it.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.opError("close", net.ErrClosed)
	}
	// Wake a waiter: the loop sees the shutdown as an event, poll(2) as
	// a hang-up.
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	c.decref()
	return nil
}

// CloseWrite shuts down the writing side.
func (c *Conn) CloseWrite() error {
	if !c.incref() {
		return c.opError("close", net.ErrClosed)
	}
	defer c.decref()
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		return c.opError("close", os.NewSyscallError("shutdown", err))
	}
	return nil
}

// Read reads like net.Conn's Read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var e syscall.Errno
	err := c.rawRead(func(fd uintptr) bool {
		for {
			r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch errno {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			n, e = int(r), errno
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case e != 0:
		return 0, c.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p like net.Conn's Write.
func (c *Conn) Write(p []byte) (int, error) { return c.send(p) }

// plainWrite writes all of p with one send(2) per try.
func (c *Conn) plainWrite(p []byte) (int, error) {
	var n int
	var e syscall.Errno
	err := c.rawWrite(func(fd uintptr) bool {
		for n < len(p) {
			rest := p[n:]
			r, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), syscall.MSG_NOSIGNAL, 0, 0)
			switch errno {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				e = errno
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case e != 0:
		return n, c.opError("write", os.NewSyscallError("write", e))
	}
	return n, nil
}

func (c *Conn) rawRead(f func(fd uintptr) bool) error  { return c.raw(dirRead, f) }
func (c *Conn) rawWrite(f func(fd uintptr) bool) error { return c.raw(dirWrite, f) }

// raw calls f with the descriptor until it reports done, waiting for the
// descriptor to turn ready in direction dir between calls.
func (c *Conn) raw(dir int, f func(fd uintptr) bool) error {
	if !c.incref() {
		return net.ErrClosed
	}
	defer c.decref()
	for !f(uintptr(c.fd)) {
		if err := c.wait(dir); err != nil {
			return err
		}
	}
	return nil
}

// SyscallConn returns the socket's syscall.RawConn: its Read and Write
// wait through the loop, as the Conn's own do.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

type rawConn struct{ c *Conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	if !r.c.incref() {
		return net.ErrClosed
	}
	defer r.c.decref()
	f(uintptr(r.c.fd))
	return nil
}

func (r rawConn) Read(f func(fd uintptr) bool) error  { return r.c.rawRead(f) }
func (r rawConn) Write(f func(fd uintptr) bool) error { return r.c.rawWrite(f) }

// Send writes all of p as the Conn's Write does, batched with the loop's
// other sends (sends.go): sockio uses it in place of Write(f).
func (r rawConn) Send(p []byte) (int, error) { return r.c.send(p) }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.setDeadline(dirRead, t)
	c.setDeadline(dirWrite, t)
	return nil
}

// SetReadDeadline sets the read deadline; the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.setDeadline(dirRead, t)
	return nil
}

// SetWriteDeadline sets the write deadline; the zero time means none.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.setDeadline(dirWrite, t)
	return nil
}

func (c *Conn) setDeadline(d int, t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	if c.deadline[d].Swap(ns) == ns {
		return
	}
	// A waiter must see the new deadline now: the loop resumes it to
	// look (a detached one sees it within its poll slice).
	c.l.Post(func() {
		if t := c.task[d]; t != nil && t.on == c && t.dir == d && !t.detached.Load() {
			c.l.resume(t)
		}
	})
}

// opError wraps err as net.Conn's methods do, so that callers test it the
// same way (errors.Is, net.Error's Timeout).
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.netw, Source: c.local, Addr: c.remote, Err: err}
}
