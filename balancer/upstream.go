package balancer

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"berth/balancer/h1"
	"berth/balancer/loop"
	"berth/balancer/sockio"
)

// Upstream is one ready worker as the balancer sees it, with its own pool
// of keep-alive connections: a connection to one worker never carries a
// request for another.
type Upstream struct {
	// Name names the worker in errors and logs ("w1").
	Name string
	// Network and Addr are what to dial: "unix" and a socket path, or
	// "tcp" and a loopback host:port.
	Network, Addr string
	// Pid is the worker's process id, for status output (0 if unknown).
	Pid int

	inflight atomic.Int64 // requests being served now
	served   atomic.Uint64
	hold     atomic.Uint32 // Hold* reasons it gets no new request

	mu      sync.Mutex // protects idle, retired, drained
	idle    idleList   // the goroutine engine's
	retired bool
	drained chan struct{} // closed when retired and no request is in flight

	// loopIdle holds each event loop's own idle connections
	// (*loop.Loop → *idleList), read without a lock: a Task that parked
	// on a lock the other loop held would stall its whole loop
	// (DESIGN.md, the loop engine).
	loopIdle sync.Map

	out atomic.Bool // retired: Release checks it without the lock
}

// Inflight is the number of requests the worker is serving now.
func (u *Upstream) Inflight() int64 { return u.inflight.Load() }

// Held reports the Hold* reasons the worker is out of rotation (0: in).
func (u *Upstream) Held() uint32 { return u.hold.Load() }

// Served is the number of requests the worker has completed.
func (u *Upstream) Served() uint64 { return u.served.Load() }

// Limits of the keep-alive pool of one worker. upIdleTimeout stays below
// Node's default keepAliveTimeout (5 s) so that berth, not the app, closes
// an idle connection: a request is never written to a connection the app
// is closing.
const (
	upMaxIdle     = 128
	upIdleTimeout = 4 * time.Second
)

// upConn is one connection to a worker.
type upConn struct {
	up    *Upstream
	c     net.Conn
	rw    io.ReadWriter // c, or its sockio.Conn
	cw    countingWriter
	bw    *bufio.Writer
	rd    *h1.Reader
	chunk h1.ChunkedWriter
	resp  h1.Response
	used  time.Time // when it was last put back idle
	reuse bool      // it carried a request before this one
	body  errReader
	// lc is c's event-loop socket and lp its loop, nil for a connection
	// of the goroutine engine.
	lc *loop.Conn
	lp *loop.Loop
	// limit is the read deadline's span while an answer is read (the
	// maximum request time), zero for none; rdl is the deadline armed.
	limit time.Duration
	rdl   time.Time
	got   int64 // bytes read from the worker in this exchange
	// scratch formats numbers and addresses for the request head.
	scratch [64]byte
}

// arm sets the read deadline limit ahead.
func (uc *upConn) arm() {
	uc.rdl = time.Now().Add(uc.limit)
	uc.c.SetReadDeadline(uc.rdl)
}

// limitedReader counts what the worker sent, and re-arms the maximum-request-time deadline as the answer
// makes progress, so a response that keeps streaming is not "hung": at
// most once per half limit, to keep timer changes off the hot path.
type limitedReader struct{ uc *upConn }

func (r limitedReader) Read(p []byte) (int, error) {
	uc := r.uc
	n, err := uc.rw.Read(p)
	uc.got += int64(n)
	if n > 0 && uc.limit > 0 && time.Until(uc.rdl) < uc.limit/2 {
		uc.arm()
	}
	return n, err
}

// countingWriter counts what reached the worker's socket, so that a
// request is retried elsewhere only if not one byte of it did.
type countingWriter struct {
	w    io.Writer
	sent int64
	// stage, while set, hands what is written to the sockio.Conn, for
	// the read of the answer to send (see upConn.send).
	stage *sockio.Conn
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.stage != nil {
		w.stage.Stage(p)
		return len(p), nil
	}
	n, err := w.w.Write(p)
	w.sent += int64(n)
	return n, err
}

// send writes what the request has left in the write buffer and waits
// for the answer's first bytes. Over a sockio.Conn the write is made by
// the read that waits for the answer (sockio.Conn.Stage), which then
// waits for the poller instead of first trying an empty socket: a
// system call saved per request. Only a write error is returned; a read
// error is left for the answer's reader to report.
func (uc *upConn) send() error {
	sc, ok := uc.rw.(*sockio.Conn)
	want := uc.bw.Buffered()
	if !ok || want == 0 {
		return uc.bw.Flush()
	}
	uc.cw.stage = sc
	uc.bw.Flush() // stages the buffer: nothing fails here
	uc.cw.stage = nil
	rerr := uc.rd.Fill()
	n, err := sc.Staged()
	uc.cw.sent += int64(n)
	if err == nil && n < want {
		// The read ended before it could write (the connection was
		// closed under it).
		err = rerr
		if err == nil {
			err = io.ErrShortWrite
		}
	}
	return err
}

// errReader records a read error of the client's body, so a failed copy
// can be blamed on the side that failed.
type errReader struct {
	r   interface{ Read([]byte) (int, error) }
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err.Error() != "EOF" {
		e.err = err
	}
	return n, err
}

// getConn returns an idle connection to u, or dials a new one. On an
// event loop (t not nil) the connection is the loop's own, bound to t.
func (u *Upstream) getConn(ctx context.Context, t *loop.Task) (*upConn, error) {
	var lp *loop.Loop
	if t != nil {
		lp = t.Loop()
		if uc := u.loopIdleOf(lp).get(); uc != nil {
			uc.reuse = true
			uc.lc.Bind(t)
			return uc, nil
		}
	} else {
		u.mu.Lock()
		uc := u.idle.get()
		u.mu.Unlock()
		if uc != nil {
			uc.reuse = true
			return uc, nil
		}
	}
	var c net.Conn
	var lc *loop.Conn
	var err error
	if t != nil {
		lc, err = t.Dial(u.Network, u.Addr)
		c = lc
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, u.Network, u.Addr)
	}
	if err != nil {
		return nil, err
	}
	uc := &upConn{up: u, c: c, rw: c, lc: lc, lp: lp}
	if sc := sockio.New(c); sc != nil {
		uc.c, uc.rw = sc, sc
	}
	uc.cw.w = uc.rw
	uc.bw = bufio.NewWriterSize(&uc.cw, 4<<10)
	uc.rd = h1.NewReaderSize(limitedReader{uc}, h1.Limits{MaxHeaderBytes: 256 << 10, MaxRequestLine: 64 << 10, MaxFields: 1000}, 32<<10)
	return uc, nil
}

// idleList is the idle connections to a worker: the goroutine engine's
// (under Upstream.mu), or one event loop's (used only on that loop's
// goroutine).
type idleList struct{ conns []*upConn } // most recently used last

// loopIdleOf returns lp's idle list for u, made on first use.
func (u *Upstream) loopIdleOf(lp *loop.Loop) *idleList {
	if v, ok := u.loopIdle.Load(lp); ok {
		return v.(*idleList)
	}
	v, _ := u.loopIdle.LoadOrStore(lp, &idleList{})
	return v.(*idleList)
}

// get takes the most recently used connection still within
// upIdleTimeout, or nil; older ones are closed.
func (li *idleList) get() *upConn {
	for len(li.conns) > 0 {
		uc := li.conns[len(li.conns)-1]
		li.conns[len(li.conns)-1] = nil
		li.conns = li.conns[:len(li.conns)-1]
		if time.Since(uc.used) < upIdleTimeout {
			return uc
		}
		uc.c.Close()
	}
	return nil
}

// put keeps uc, or closes it when the list is full. The connections past
// their time (the oldest first) are dropped here rather than by a reaper
// goroutine.
func (li *idleList) put(uc *upConn) {
	if len(li.conns) >= upMaxIdle {
		uc.c.Close()
		return
	}
	li.conns = append(dropStale(li.conns, uc.used), uc)
}

// closeAll closes every connection in the list.
func (li *idleList) closeAll() {
	for i, uc := range li.conns {
		uc.c.Close()
		li.conns[i] = nil
	}
	li.conns = li.conns[:0]
}

// dropStale closes the connections of idle (oldest first) that were put
// back upIdleTimeout or more before now, and returns the rest.
func dropStale(idle []*upConn, now time.Time) []*upConn {
	drop := 0
	for drop < len(idle) && now.Sub(idle[drop].used) >= upIdleTimeout {
		idle[drop].c.Close()
		drop++
	}
	if drop > 0 {
		n := copy(idle, idle[drop:])
		clear(idle[n:])
		idle = idle[:n]
	}
	return idle
}

// putConn returns a connection that finished an exchange cleanly. A
// loop's connection is put back by a Task on that loop.
func (u *Upstream) putConn(uc *upConn) {
	uc.used = time.Now()
	if uc.lp != nil {
		if u.out.Load() {
			uc.c.Close()
			return
		}
		u.loopIdleOf(uc.lp).put(uc)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.retired {
		uc.c.Close()
		return
	}
	u.idle.put(uc)
}

// dropIdle closes every idle connection to u: after one of them failed,
// the others are suspect (the worker may have died). The loops close
// their own, soon.
func (u *Upstream) dropIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = idleList{}
	u.mu.Unlock()
	idle.closeAll()
	u.loopIdle.Range(func(k, v any) bool {
		li := v.(*idleList)
		k.(*loop.Loop).Post(li.closeAll)
		return true
	})
}

// retire closes the idle connections of a worker leaving the pool and
// keeps it from pooling more.
func (u *Upstream) retire() {
	u.mu.Lock()
	u.retired = true
	if u.drained == nil {
		u.drained = make(chan struct{})
	}
	u.mu.Unlock()
	u.out.Store(true)
	u.dropIdle()
	u.checkDrained()
}

// checkDrained closes drained once a retired worker serves nothing.
func (u *Upstream) checkDrained() {
	if u.inflight.Load() != 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.drained != nil {
		select {
		case <-u.drained:
		default:
			close(u.drained)
		}
	}
}
