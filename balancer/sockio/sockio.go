// Package sockio reads and writes a connected socket with plain system
// calls made through the runtime's poller, without the scheduler's
// system-call bookkeeping.
//
// A read or write on a net.Conn enters the Go scheduler's "in a system
// call" state, so that a blocking call cannot hold a processor. The
// calls here never block: the socket is non-blocking, and EAGAIN is
// turned into a wait on the poller, as net.Conn does. But the scheduler
// cannot tell, and on a busy proxy its monitor thread keeps taking
// processors away from goroutines inside such short calls and waking
// other threads to run what was queued: measured at hello c=64, the
// monitor and the thread wake-ups it caused were about 15 % of berth's
// CPU. Calls made with syscall.RawSyscall keep the processor; deadlines,
// Close and the poller work as with net.Conn, because the calls go
// through the connection's syscall.RawConn.
package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn reads and writes one socket; its other methods are the
// net.Conn's it wraps. It is not safe for concurrent Reads (or concurrent
// Writes), like the state a net.Conn keeps for them.
type Conn struct {
	net.Conn

	// BeforeWait, if set, is called on the reading goroutine when a
	// Read finds nothing to read and is about to wait for the poller
	// (possibly more than once per Read).
	BeforeWait func()

	rc syscall.RawConn

	// What the read and write callbacks work on, set around each call:
	// the callbacks are made once, so a call allocates nothing.
	rbuf, wbuf   []byte
	rn, wn       int
	rerr, werr   syscall.Errno
	rfunc, wfunc func(fd uintptr) bool
}

// New returns a Conn for c, or nil when c is not a stream socket of the
// kernel's own (a TLS connection, a wrapper such as the PROXY protocol
// listener's): the caller then reads and writes c itself.
func New(c net.Conn) *Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	s := &Conn{Conn: c, rc: rc}
	s.rfunc, s.wfunc = s.read, s.write
	return s
}

// Read reads into p like net.Conn.Read: at least one byte, io.EOF at the
// end of the stream, a timeout error past the read deadline.
func (s *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = p, 0, 0
	err := s.rc.Read(s.rfunc)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case s.rerr != 0:
		return 0, s.opError("read", os.NewSyscallError("read", s.rerr))
	case s.rn == 0:
		return 0, io.EOF
	}
	raceAcquire()
	return s.rn, nil
}

func (s *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if s.BeforeWait != nil {
				s.BeforeWait()
			}
			return false // wait for the poller
		}
		s.rerr = e
		return true
	}
}

// Write writes all of p like net.Conn.Write, waiting for room as needed,
// and fails past the write deadline with what was written counted.
func (s *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	raceReleaseMerge()
	s.wbuf, s.wn, s.werr = p, 0, 0
	err := s.rc.Write(s.wfunc)
	n := s.wn
	s.wbuf = nil
	switch {
	case err != nil:
		return n, s.opError("write", err)
	case s.werr != 0:
		return n, s.opError("write", os.NewSyscallError("write", s.werr))
	}
	return n, nil
}

// write sends with MSG_NOSIGNAL: a peer that closed gets EPIPE, not a
// signal.
func (s *Conn) write(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		rest := s.wbuf[s.wn:]
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.wn += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for room
		}
		s.werr = e
		return true
	}
	return true
}

// ReadFrom hands r to the connection's own ReadFrom, which sends files
// with sendfile(2) and splices from sockets.
func (s *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := s.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{s}, r)
}

type writerOnly struct{ io.Writer }

// opError wraps err as net.Conn's methods do, so that callers test it
// the same way (errors.Is, net.Error's Timeout).
func (s *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // RawConn's own wrapping, "raw-read"
	}
	return &net.OpError{Op: op, Net: s.LocalAddr().Network(), Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// Listener wraps l so that the connections it accepts are Conns where
// they can be (the others are returned as they are): for a wrapper that
// reads and writes through a net.Conn, such as a TLS listener.
func Listener(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if s := New(c); s != nil {
		return s, nil
	}
	return c, nil
}
