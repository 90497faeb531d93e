package balancer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"berth/balancer/h1"
	"berth/balancer/loop"
)

// ServerConfig configures a Server. Handler is required.
type ServerConfig struct {
	// Handler answers every request: the handler chain.
	Handler Handler
	// Listeners are the public sockets the server accepts on. Serve
	// closes them when it returns.
	Listeners []net.Listener
	// TLS reports, per listener (by index), whether its connections are
	// TLS; the scheme forwarded to the app follows it. If nil, none are.
	// The server runs the handshake of a *tls.Conn itself, in the
	// connection's goroutine, within HeaderTimeout.
	TLS []bool
	// HTTP2 serves TLS connections that negotiated "h2" by ALPN (the
	// tls.Config of the listener offers it) with net/http's HTTP/2
	// server, whose streams reach Handler as Exchanges. If false, such a
	// connection is closed.
	HTTP2 bool
	// Loops, if any, serve the plain (not TLS) connections of TCP and
	// Unix listeners as Tasks of these event loops, each new connection
	// on the loop with the fewest; the others stay on goroutines. If
	// nil, every connection has a goroutine.
	Loops []*loop.Loop
	// Limits bound a request head; the zero value takes h1's defaults.
	Limits h1.Limits
	// HeaderTimeout is how long a client may take to send a request head
	// once it began. If zero, DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request. If zero, DefaultIdleTimeout.
	IdleTimeout time.Duration
	// BodyTimeout is how long a read of the request body, or a write of
	// the response, may wait for the client before the connection is
	// closed. If zero, DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Log receives connection-level problems. If nil, nothing is logged.
	Log *slog.Logger
}

// Defaults for ServerConfig.
const (
	DefaultHeaderTimeout = 15 * time.Second
	DefaultIdleTimeout   = 75 * time.Second
	DefaultBodyTimeout   = 60 * time.Second
)

// newConnGrace is how long, once shutdown began, a connection that has
// not sent its first request yet is waited for: under socket activation a
// connection accepted a moment before a restart carries a request that is
// on its way.
const newConnGrace = 5 * time.Second

// A Gate is a listener wrapper that limits connections (balancer/limits),
// seen by an accept loop that takes connections from the listener it
// wraps itself: the event loops', which accept raw descriptors.
type Gate interface {
	net.Listener
	// Unwrap returns the wrapped listener.
	Unwrap() net.Listener
	// Enter waits for room for one more connection; net.ErrClosed once
	// the listener is closed.
	Enter() (Pass, error)
}

// A Pass is a place a Gate gave for one connection.
type Pass interface {
	// Admit counts the connection accepted from remote; false means it
	// must be closed (its address is at its limit), and the pass is given
	// back.
	Admit(remote net.Addr) bool
	// Done gives the place back: the connection closed, or none was
	// accepted. Calls after the first do nothing.
	Done()
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("balancer: server closed")

// Server is berth's front door: it accepts connections on the public
// listeners, reads HTTP/1.1 requests with a strict parser, hands each to
// the handler chain, and drains on Shutdown without losing a request
// that reached it. Its shape follows net/http.Server: Serve, Shutdown,
// Close.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	ctx    context.Context // ends on Close: exchanges stop at once
	cancel context.CancelFunc

	shutting atomic.Bool
	mu       sync.Mutex // protects conns, changed
	conns    map[*conn]struct{}
	changed  chan struct{} // closed and replaced when a connection ends or goes idle
	wg       sync.WaitGroup
	serving  sync.WaitGroup   // accept loops
	h2       *h2Front         // nil without HTTP2
	loopLs   []*loop.Listener // the event loops' own listeners; under mu
	adopting atomic.Int64     // connections accepted for a loop whose Task has not started
	h2done   chan struct{}    // closed when the HTTP/2 server's loop ended
}

// NewServer returns a Server; Serve starts it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("balancer: ServerConfig.Handler is nil")
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Log, conns: map[*conn]struct{}{}, changed: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.HTTP2 {
		s.h2 = newH2Front(s)
	}
	return s, nil
}

// Serve accepts connections on every listener until Shutdown or Close, or
// until ctx ends (which is Close). It returns ErrServerClosed then, or the
// first listener's fatal error.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	if s.h2 != nil {
		s.h2done = make(chan struct{})
		go func() {
			defer close(s.h2done)
			s.h2.serve()
		}()
	}
	errs := make(chan error, len(s.cfg.Listeners))
	for i, l := range s.cfg.Listeners {
		tls := i < len(s.cfg.TLS) && s.cfg.TLS[i]
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			errs <- s.accept(l, tls)
		}()
	}
	s.serving.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return ErrServerClosed
}

// accept runs one listener's accept loop; it returns nil once the
// listener was closed by Shutdown or Close.
func (s *Server) accept(l net.Listener, tls bool) error {
	if len(s.cfg.Loops) > 0 && !tls {
		inner := l
		g, gated := l.(Gate)
		if gated {
			inner = g.Unwrap()
		}
		switch inner.(type) {
		case *net.TCPListener, *net.UnixListener:
			return s.acceptLoops(inner, g)
		}
	}
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.shutting.Load() || s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				s.acceptPause(l, err, &pause)
				continue
			}
			return err
		}
		pause = 0
		cn := s.newConn(c, tls)
		if cn == nil {
			c.Close()
			continue
		}
		go cn.serve()
	}
}

// acceptLoops is accept for the event loops: it accepts raw descriptors
// (the runtime's poller never sees them) and hands each to the loop with
// the fewest Tasks. If gate is not nil, its limits apply.
func (s *Server) acceptLoops(l net.Listener, gate Gate) error {
	ll, err := loop.Listen(l)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.loopLs = append(s.loopLs, ll)
	s.mu.Unlock()
	if s.shutting.Load() {
		ll.Close() // Shutdown or Close came first and missed it
	}
	var pause time.Duration
	for {
		var p Pass
		if gate != nil {
			if p, err = gate.Enter(); err != nil {
				if s.shutting.Load() || s.ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		fd, remote, err := ll.Accept()
		if err != nil {
			if p != nil {
				p.Done()
			}
			if s.shutting.Load() || s.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
				s.acceptPause(l, err, &pause)
				continue
			}
			return err
		}
		pause = 0
		if p != nil {
			if !p.Admit(remote) { // over its address's limit
				unix.Close(fd)
				continue
			}
		}
		lp := s.cfg.Loops[0]
		for _, o := range s.cfg.Loops[1:] {
			if o.Load() < lp.Load() {
				lp = o
			}
		}
		// Until its Task starts, Shutdown counts the connection as one
		// that has yet to send its request.
		s.adopting.Add(1)
		lp.Adopt(fd, func(t *loop.Task, c *loop.Conn, err error) {
			var cn *conn
			if err == nil {
				cn = s.newConn(c, false)
			} else {
				s.log.Warn("connection dropped", "addr", l.Addr().String(), "err", err)
			}
			s.adopting.Add(-1)
			if cn == nil {
				if c != nil {
					c.Close()
				}
				if p != nil {
					p.Done()
				}
				return
			}
			cn.task = t
			cn.serve()
			c.Close()
			if p != nil {
				p.Done()
			}
		})
	}
}

// acceptPause waits after an accept that failed for want of resources
// (out of file descriptors or the like), longer each time up to a
// second, as net/http does: the kernel keeps the backlog meanwhile.
func (s *Server) acceptPause(l net.Listener, err error, pause *time.Duration) {
	*pause = min(max(2**pause, 5*time.Millisecond), time.Second)
	s.log.Warn("accept failed; retrying", "addr", l.Addr().String(), "err", err, "pause", *pause)
	time.Sleep(*pause)
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) newConn(c net.Conn, tls bool) *conn {
	cn := newConn(s, c, tls)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil
	}
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	return cn
}

// forget is called by a connection when it ends.
func (s *Server) forget(cn *conn) {
	s.mu.Lock()
	delete(s.conns, cn)
	s.changedLocked()
	s.mu.Unlock()
	s.wg.Done()
}

// wentIdle is called by a connection that finished a request and waits
// for the next one.
func (s *Server) wentIdle() {
	if !s.shutting.Load() {
		return
	}
	s.mu.Lock()
	s.changedLocked()
	s.mu.Unlock()
}

func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Draining reports whether Shutdown has begun: responses carry
// Connection: close from then on.
func (s *Server) Draining() bool { return s.shutting.Load() }

// Shutdown stops the server without losing a request that reached it: it
// closes the listeners, closes idle keep-alive connections at once, lets
// every request in progress finish (its response says Connection: close),
// and waits for a connection accepted just before to send its first
// request (up to a short grace). It returns nil when every connection is
// gone, or ctx's error when ctx ends first; Close then ends the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.closeListeners()
	s.serving.Wait() // every accepted connection is tracked now, or adopting
	h2err := make(chan error, 1)
	if s.h2 != nil {
		// GOAWAY on every HTTP/2 connection; their streams finish.
		go func() { h2err <- s.h2.shutdown(ctx) }()
	} else {
		h2err <- nil
	}
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		left := int(s.adopting.Load())
		for cn := range s.conns {
			if cn.state.Load() != stateHijacked {
				left++
				cn.closeIfIdle(time.Since(start) >= newConnGrace)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if left == 0 {
			s.closeConns() // protocol switches (WebSockets) end with berth
			return <-h2err
		}
		select {
		case <-changed:
		case <-tick.C: // a new connection may have passed its grace
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close closes the listeners and every connection at once, and waits for
// the connections' goroutines to end.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.cancel()
	s.closeListeners()
	s.closeConns()
	s.wg.Wait()
	if s.h2 != nil {
		s.h2.close()
		s.h2.l.Close()
		if s.h2done != nil {
			<-s.h2done
		}
	}
	return nil
}

// closeListeners closes the public listeners and the loops' own.
func (s *Server) closeListeners() {
	for _, l := range s.cfg.Listeners {
		l.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.loopLs {
		l.Close()
	}
}

// closeConns closes every connection and the worker connection it uses.
func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cn := range s.conns {
		cn.c.Close()
		if uc := cn.up.Load(); uc != nil {
			uc.c.Close()
		}
	}
}
