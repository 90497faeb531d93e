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
	"errors"
	"io"
	"iter"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Conn reads and writes one socket; its other methods are the
// net.Conn's it wraps. It is not safe for concurrent Reads (or concurrent
// Writes), like the state a net.Conn keeps for them. Close and Detach may
// be called from any goroutine.
//
// A Conn's reads go through one raw read held open for the connection's
// life, on a coroutine of its own (iter.Pull): the runtime's poller
// forgets a readiness notice whenever a raw read begins, so a read
// that begins anew must first try the socket, and between a request and
// its answer that try nearly always finds nothing (EAGAIN, a system
// call for nothing: 1.8 of them per proxied request, 1 per cache hit).
// Inside the held read no notice is forgotten, so a read that follows a
// read that emptied the socket, with a write in between (the other side's
// turn to speak), waits for the poller's notice instead of trying.
type Conn struct {
	net.Conn

	// BeforeWait, if set, is called when a Read finds nothing to read
	// and is about to wait for the poller (possibly more than once per
	// Read). It runs on the held read's coroutine while the reading
	// goroutine waits for it, so it may touch what that goroutine owns.
	BeforeWait func()

	// HoldReads, set before the first Read, makes the Conn's reads go
	// through the held read (see above): for a connection where the peer
	// speaks after berth (a client's next request after its answer).
	// Without it each Read is a raw read of its own, which tries the
	// socket first unless it follows a Stage.
	HoldReads bool

	rc syscall.RawConn

	// What the read and write callbacks work on, set around each call:
	// the callbacks are made once, so a call allocates nothing.
	rbuf, wbuf   []byte
	rn, wn       int
	rerr, werr   syscall.Errno
	rfunc, wfunc func(fd uintptr) bool
	ofunc        func(fd uintptr) bool

	// What Stage left for the next Read to write, and how that went.
	staged []byte
	sn     int
	serr   syscall.Errno

	// The held read (see above). state says who may resume it; the
	// rest is touched only by the goroutine that does.
	state   atomic.Int32
	next    func() (struct{}, bool)
	stop    func()
	yield   func(struct{}) bool
	rawErr  error       // how the held raw read ended (a deadline, a close)
	fresh   bool        // the raw read has just begun: its first read must try
	drained bool        // the last read came back short: it emptied the socket
	wrote   atomic.Bool // something was written since the last read (a Write may run beside a Read)
	stopped bool        // the coroutine was told to end
	reads   int         // read system calls made (for tests)
}

// The states of a Conn's held read.
const (
	stateIdle     int32 = iota // no Read in progress
	stateReading               // a Read is in progress
	stateClosed                // closed: Reads fail
	stateDetached              // given up for the plain net.Conn (Detach)
)

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
	s.rfunc, s.wfunc, s.ofunc = s.read, s.write, s.readOnce
	return s
}

// Read reads into p like net.Conn.Read: at least one byte, io.EOF at the
// end of the stream, a timeout error past the read deadline.
func (s *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !s.HoldReads {
		return s.readAlone(p)
	}
	if !s.state.CompareAndSwap(stateIdle, stateReading) {
		if s.state.Load() == stateDetached {
			return s.Conn.Read(p)
		}
		return 0, s.opError("read", net.ErrClosed)
	}
	s.rbuf, s.rn, s.rerr, s.rawErr = p, 0, 0, nil
	if s.next == nil {
		s.next, s.stop = iter.Pull(s.held)
	}
	_, ok := s.next()
	s.rbuf = nil
	if !s.state.CompareAndSwap(stateReading, stateIdle) {
		// Closed meanwhile: the close woke the raw read, or will as
		// soon as it waits; end the coroutine so the close completes.
		s.stop()
	}
	if !ok {
		return 0, s.opError("read", net.ErrClosed)
	}
	return s.result(s.rawErr)
}

// result is what a Read returns once its raw read ended with err.
func (s *Conn) result(err error) (int, error) {
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

// readAlone is a Read without the held read: one raw read, which first
// writes what was staged.
func (s *Conn) readAlone(p []byte) (int, error) {
	s.rbuf, s.rn, s.rerr = p, 0, 0
	err := s.rc.Read(s.ofunc)
	if err == nil && s.serr == 0 && s.sn < len(s.staged) {
		// The socket had no room for all of it: write the rest as Write
		// does, then read as usual.
		rest := s.staged[s.sn:]
		s.staged = nil
		n, werr := s.Write(rest)
		s.sn += n
		if werr != nil {
			s.rbuf = nil
			return 0, werr
		}
		err = s.rc.Read(s.ofunc)
	}
	s.rbuf, s.staged = nil, nil
	if s.serr != 0 {
		return 0, s.opError("write", os.NewSyscallError("write", s.serr))
	}
	return s.result(err)
}

// Stage keeps p for the next Read to write whole before it reads: a
// request, then the wait for its answer, in one raw read. The answer
// can only come after the request went out, inside that raw read, so
// the poller's notice of it is not lost and the Read, when the last
// read emptied the socket, waits for the notice instead of first trying
// the socket (which would find it empty: a system call for nothing).
// p must stay unchanged until that Read returns; Staged then tells how
// the write went. Not with HoldReads.
func (s *Conn) Stage(p []byte) {
	raceReleaseMerge()
	s.wrote.Store(true)
	s.staged, s.sn, s.serr = p, 0, 0
}

// Staged reports how much of what was staged the last Read wrote, and
// the error that stopped it (nil once it was written whole).
func (s *Conn) Staged() (int, error) {
	if s.serr != 0 {
		return s.sn, s.opError("write", os.NewSyscallError("write", s.serr))
	}
	return s.sn, nil
}

func (s *Conn) readOnce(fd uintptr) bool {
	if s.staged != nil {
		switch e := send(fd, s.staged, &s.sn); e {
		case 0:
		case syscall.EAGAIN:
			return true // readAlone writes the rest
		default:
			s.serr = e
			return true
		}
		s.staged = nil
		if s.drained {
			s.drained = false
			s.beforeWait()
			return false // the answer comes with the poller's notice
		}
	}
	for {
		n, e := s.rawRead(fd, s.rbuf)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			s.drained = false
			s.beforeWait()
			return false
		case 0:
			s.rn = n
		default:
			s.rerr = e
		}
		s.drained = e == 0 && n > 0 && n < len(s.rbuf)
		return true
	}
}

// held is the held read's coroutine: one raw read for as long as the
// runtime lets it run (a deadline or a close ends it; the next Read
// begins another), handing each read's result to Read.
func (s *Conn) held(yield func(struct{}) bool) {
	s.yield = yield
	for {
		s.fresh = true
		err := s.rc.Read(s.rfunc)
		if s.stopped {
			return
		}
		s.rawErr = err
		if !yield(struct{}{}) {
			return
		}
	}
}

func (s *Conn) read(fd uintptr) bool {
	for {
		if s.stopped {
			return true
		}
		if s.drained && !s.fresh && s.wrote.Load() {
			// The socket was empty after the last read and it is the
			// peer's turn: what it sends comes with the poller's notice.
			s.drained = false
			s.beforeWait()
			return false
		}
		s.fresh = false
		n, e := s.rawRead(fd, s.rbuf)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			s.drained = false
			s.beforeWait()
			return false // wait for the poller
		case 0:
			s.rn = n
		default:
			s.rerr = e
		}
		// A short read left the socket empty (a stream socket reads
		// what it holds, up to the buffer's size).
		s.drained = e == 0 && n > 0 && n < len(s.rbuf)
		s.wrote.Store(false)
		if !s.yield(struct{}{}) {
			s.stopped = true
			return true
		}
	}
}

func (s *Conn) beforeWait() {
	if s.BeforeWait != nil {
		s.BeforeWait()
	}
}

func (s *Conn) rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	s.reads++
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// Close closes the connection; a Read in progress fails.
func (s *Conn) Close() error {
	for {
		switch s.state.Load() {
		case stateIdle:
			if s.state.CompareAndSwap(stateIdle, stateClosed) {
				// No Read in progress can resume the coroutine now:
				// end it here, or the net.Conn's close would wait for
				// the raw read it holds.
				s.end()
				return s.Conn.Close()
			}
		case stateReading:
			if s.state.CompareAndSwap(stateReading, stateClosed) {
				// The close wakes the raw read; the reader ends the
				// coroutine when its Read returns.
				return s.Conn.Close()
			}
		default:
			return s.Conn.Close()
		}
	}
}

// Detach ends the held read and returns the net.Conn, for a caller that
// reads it itself from now on (a tunnel that splices). The Conn's own
// Reads then go to the net.Conn. It must not be called during a Read.
func (s *Conn) Detach() net.Conn {
	if s.state.CompareAndSwap(stateIdle, stateDetached) {
		s.end()
	}
	return s.Conn
}

// Detach returns c's net.Conn when c is a Conn (see Conn.Detach), else c.
func Detach(c net.Conn) net.Conn {
	if s, ok := c.(*Conn); ok {
		return s.Detach()
	}
	return c
}

// end ends the held read's coroutine, if there is one.
func (s *Conn) end() {
	if s.stop != nil {
		s.stop()
	}
}

// CloseWrite shuts down the writing side, as the net.Conn's CloseWrite.
func (s *Conn) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Write writes all of p like net.Conn.Write, waiting for room as needed,
// and fails past the write deadline with what was written counted.
func (s *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	raceReleaseMerge()
	s.wbuf, s.wn, s.werr = p, 0, 0
	s.wrote.Store(true)
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
	switch e := send(fd, s.wbuf, &s.wn); e {
	case 0:
		return true
	case syscall.EAGAIN:
		return false // wait for room
	default:
		s.werr = e
		return true
	}
}

// send writes p[*n:], advancing *n, until all of p is written or a call
// fails; it returns that call's errno (EAGAIN: no room now), 0 when done.
func send(fd uintptr, p []byte, n *int) syscall.Errno {
	for *n < len(p) {
		rest := p[*n:]
		k, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			*n += int(k)
		case syscall.EINTR:
		default:
			return e
		}
	}
	return 0
}

// ReadFrom hands r to the connection's own ReadFrom, which sends files
// with sendfile(2) and splices from sockets.
func (s *Conn) ReadFrom(r io.Reader) (int64, error) {
	s.wrote.Store(true)
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
// they can be (the others are returned as they are), with HoldReads: for
// a wrapper that reads and writes a client's connection through a
// net.Conn, such as a TLS listener.
func Listener(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if s := New(c); s != nil {
		s.HoldReads = true
		return s, nil
	}
	return c, nil
}
