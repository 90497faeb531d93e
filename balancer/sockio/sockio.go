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
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"berth/balancer/loop"
)

// Conn reads and writes one socket; its other methods are the
// net.Conn's it wraps. It is not safe for concurrent Reads (or concurrent
// Writes), like the state a net.Conn keeps for them. Close may be called
// from any goroutine.
//
// The runtime's poller forgets a readiness notice whenever a raw read
// (a syscall.RawConn Read call) begins, so a read that begins anew must
// first try the socket; between a request and its answer that try
// nearly always finds nothing (EAGAIN: a system call for nothing, 1.8 of
// them per proxied request and 1 per cache hit before Serve and Stage).
// Serve and Stage read without that try where it is safe: see them.
type Conn struct {
	net.Conn

	// BeforeWait, if set, is called when a Read outside Serve finds
	// nothing to read and is about to wait for the poller (possibly more
	// than once per Read).
	BeforeWait func()

	rc syscall.RawConn
	bs batchSender // rc, when it sends itself (the loop engine's); nil otherwise

	// What the read and write callbacks work on, set around each call:
	// the callbacks are made once, so a call allocates nothing.
	rbuf, wbuf          []byte
	rn, wn              int
	rerr, werr          syscall.Errno
	rfunc, wfunc, sfunc func(fd uintptr) bool

	// What Stage left for the next Read to write, and how that went;
	// over a batching RawConn (bs), the send's error, and whether the
	// read is to wait for the poller before it tries the socket.
	staged  []byte
	sn      int
	serr    syscall.Errno
	sendErr error
	skipTry bool

	// Serve's: the turn function, the descriptor while a turn runs
	// (inside is set then), and state, which Close reads.
	turn    func() Turn
	fd      uintptr
	inside  bool
	state   atomic.Int32
	drained bool        // the last read came back short: it emptied the socket
	wrote   atomic.Bool // written since the last read (a Write may run beside a Read)
	replied bool        // the peer spoke again after one of berth's turns (Serve)
	reads   int         // read system calls made (for tests)
}

// The states of a Conn, for Close.
const (
	stateIdle    int32 = iota // not in Serve
	stateRunning              // in Serve, a turn running
	stateWaiting              // in Serve, waiting for the poller
	stateClosed
)

// New returns a Conn for c, or nil when c is not a stream socket of the
// kernel's own (a TLS connection, a wrapper such as the PROXY protocol
// listener's): the caller then reads and writes c itself.
func New(c net.Conn) *Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn, *loop.Conn:
	default:
		return nil
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	s := &Conn{Conn: c, rc: rc}
	s.bs, _ = rc.(batchSender)
	s.rfunc, s.wfunc, s.sfunc = s.read, s.write, s.serve
	return s
}

// Turn is what a Serve turn asks for next.
type Turn int

const (
	// Wait: call the turn again once the poller says the socket is
	// readable.
	Wait Turn = iota
	// Leave: Serve returns.
	Leave
)

// ErrWouldBlock is what a Read inside a Serve turn returns when there is
// nothing to read now: the turn returns Wait, and reads again when
// called again. Readers in between must not keep it as the connection's
// error: its WouldBlock method says so to h1.Reader, and as a net.Error
// it is Temporary, which tls.Conn honours (it keeps the part of a record
// it has and reads on at the next call).
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string    { return "sockio: nothing to read yet" }
func (wouldBlock) WouldBlock() bool { return true }
func (wouldBlock) Timeout() bool    { return false }
func (wouldBlock) Temporary() bool  { return true }

// Under returns the Conn that c reads and writes through: c itself, or
// the Conn under a TLS connection or under a wrapper that gives its own
// (the PROXY protocol's Raw); nil when there is none.
func Under(c net.Conn) *Conn {
	for range 4 {
		switch v := c.(type) {
		case *Conn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		case interface{ Raw() net.Conn }:
			c = v.Raw()
		default:
			return nil
		}
	}
	return nil
}

// Serve calls turn, and again each time turn returns Wait and the socket
// turns readable, until turn returns Leave; all of it inside one raw
// read, which holds the socket's reading side. Serve returns the raw
// read's error when it ends otherwise: a read deadline, a close.
//
// Inside a turn, Read reads the socket at once and returns ErrWouldBlock
// when there is nothing to read: the turn must then return Wait. Because
// no readiness notice is forgotten inside one raw read, Read also
// returns ErrWouldBlock without trying the socket when the last read
// emptied it (a short read: a stream socket returns what it holds, up to
// the buffer's size) and something was written since (the peer's turn to
// speak): whatever the peer sends comes with the poller's notice. A turn
// must not read the socket any other way.
//
// This is the front door's way to read a client's requests: read one,
// answer it, and wait for the next without a system call for nothing.
// Bytes and the end of the stream that arrive together are the case it
// would see late: after the short read that took the bytes, the end has
// been announced already, and a wait sees it only when a deadline ends
// the wait. So the try is skipped only once the peer has spoken again
// after one of berth's turns: a client that sends one request and shuts
// its side down (nc -N) is answered and closed at once; one that does so
// after a later request waits for the idle deadline.
func (s *Conn) Serve(turn func() Turn) error {
	if !s.state.CompareAndSwap(stateIdle, stateRunning) {
		return s.opError("read", net.ErrClosed)
	}
	// A new raw read: the poller's notices before it are forgotten, so
	// its first read must try the socket.
	s.turn, s.drained = turn, false
	err := s.rc.Read(s.sfunc)
	s.turn = nil
	if s.state.CompareAndSwap(stateRunning, stateIdle) || s.state.CompareAndSwap(stateWaiting, stateIdle) {
		if err != nil {
			return s.opError("read", err)
		}
		return nil
	}
	// Closed while serving: finish the close the closer could not.
	s.Conn.Close()
	return s.opError("read", net.ErrClosed)
}

func (s *Conn) serve(fd uintptr) bool {
	if !s.state.CompareAndSwap(stateWaiting, stateRunning) && s.state.Load() != stateRunning {
		return true // closed while waiting
	}
	s.fd, s.inside = fd, true
	t := s.turn()
	s.inside = false
	if t == Leave || !s.state.CompareAndSwap(stateRunning, stateWaiting) {
		return true // done, or closed during the turn
	}
	return false
}

// Read reads into p like net.Conn.Read: at least one byte, io.EOF at the
// end of the stream, a timeout error past the read deadline; inside a
// Serve turn, see Serve.
func (s *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.inside {
		return s.readInside(p)
	}
	s.rbuf, s.rn, s.rerr = p, 0, 0
	if s.bs != nil && s.staged != nil {
		if err := s.sendStaged(); err != nil {
			s.rbuf = nil
			return 0, err
		}
	}
	err := s.rc.Read(s.rfunc)
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
		err = s.rc.Read(s.rfunc)
	}
	s.rbuf, s.staged = nil, nil
	if s.serr != 0 {
		return 0, s.opError("write", os.NewSyscallError("write", s.serr))
	}
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

func (s *Conn) readInside(p []byte) (int, error) {
	if s.drained && s.replied && s.wrote.Load() {
		s.drained = false
		return 0, ErrWouldBlock
	}
	for {
		n, e := s.rawRead(s.fd, p)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			s.drained = false
			return 0, ErrWouldBlock
		case 0:
		default:
			s.drained = false
			return 0, s.opError("read", os.NewSyscallError("read", e))
		}
		if n > 0 && s.wrote.Load() {
			s.replied = true
		}
		s.note(n, len(p))
		if n == 0 {
			return 0, io.EOF
		}
		raceAcquire()
		return n, nil
	}
}

// note records a read of n bytes into a buffer of size: a short one
// emptied the socket.
func (s *Conn) note(n, size int) {
	s.drained = n > 0 && n < size
	s.wrote.Store(false)
}

func (s *Conn) rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	s.reads++
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// Close closes the connection. During a Serve turn it cannot close the
// descriptor, which the turn's raw read holds (a net.Conn's Close would
// wait for it): it shuts the socket down instead (the peer sees the
// end; reads and writes fail) and breaks any wait; Serve closes the
// descriptor when the turn returns.
func (s *Conn) Close() error {
	for {
		switch st := s.state.Load(); st {
		case stateRunning:
			if s.state.CompareAndSwap(stateRunning, stateClosed) {
				s.rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
				s.Conn.SetDeadline(aLongTimeAgo)
				return nil
			}
		case stateWaiting, stateIdle:
			// Closing wakes a wait; Serve's raw read then ends without
			// another turn, and the close completes. If a turn began
			// meanwhile, the swap fails and the loop looks again.
			if s.state.CompareAndSwap(st, stateClosed) {
				return s.Conn.Close()
			}
		default:
			return s.Conn.Close()
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// Detach returns c's net.Conn when c is a Conn, else c: for a caller that
// reads and writes it itself from now on (a tunnel that splices).
func Detach(c net.Conn) net.Conn {
	if s, ok := c.(*Conn); ok {
		return s.Conn
	}
	return c
}

// CloseWrite shuts down the writing side, as the net.Conn's CloseWrite.
func (s *Conn) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Stage keeps p for the next Read to write whole before it reads: a
// request, then the wait for its answer, in one raw read. The answer
// can only come after the request went out, inside that raw read, so
// the poller's notice of it is not lost and the Read, when the last
// read emptied the socket, waits for the notice instead of first trying
// the socket (which would find it empty: a system call for nothing).
// p must stay unchanged until that Read returns; Staged then tells how
// the write went. Not inside a Serve turn.
func (s *Conn) Stage(p []byte) {
	raceReleaseMerge()
	s.wrote.Store(true)
	s.staged, s.sn, s.serr, s.sendErr, s.skipTry = p, 0, 0, nil, false
}

// sendStaged sends what was staged through the batching RawConn (the
// loop engine's): the request leaves with the loop's other sends at the
// end of its turn instead of in a system call of its own. The read that
// follows then waits for the answer's notice when the last read emptied
// the socket, as read does after a plain send.
func (s *Conn) sendStaged() error {
	p := s.staged
	s.staged = nil
	n, err := s.bs.Send(p)
	s.sn = n
	if err != nil {
		s.sendErr = s.opError("write", err)
		return s.sendErr
	}
	s.skipTry, s.drained = s.drained, false
	return nil
}

// Staged reports how much of what was staged the last Read wrote, and
// the error that stopped it (nil once it was written whole).
func (s *Conn) Staged() (int, error) {
	if s.sendErr != nil {
		return s.sn, s.sendErr
	}
	if s.serr != 0 {
		return s.sn, s.opError("write", os.NewSyscallError("write", s.serr))
	}
	return s.sn, nil
}

// read is a Read's raw read: it writes what was staged first, then
// reads.
func (s *Conn) read(fd uintptr) bool {
	if s.skipTry {
		s.skipTry = false
		s.beforeWait()
		return false // the answer comes with the poller's notice
	}
	if s.staged != nil {
		switch e := send(fd, s.staged, &s.sn); e {
		case 0:
		case syscall.EAGAIN:
			return true // Read writes the rest
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
			return false // wait for the poller
		case 0:
			s.rn = n
			s.note(n, len(s.rbuf))
		default:
			s.rerr = e
			s.drained = false
		}
		return true
	}
}

func (s *Conn) beforeWait() {
	if s.BeforeWait != nil {
		s.BeforeWait()
	}
}

// Write writes all of p like net.Conn.Write, waiting for room as needed,
// and fails past the write deadline with what was written counted.
func (s *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	raceReleaseMerge()
	s.wrote.Store(true)
	if s.bs != nil {
		n, err := s.bs.Send(p)
		if err != nil {
			return n, s.opError("write", err)
		}
		return n, nil
	}
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

// batchSender is a RawConn that sends itself, batched with others (the
// loop engine's: balancer/loop/sends.go).
type batchSender interface {
	Send(p []byte) (int, error)
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
