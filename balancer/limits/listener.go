package limits

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"berth/balancer"
)

// ListenerConfig configures a Listener. The zero value limits nothing.
type ListenerConfig struct {
	// MaxConns is how many connections may be open at once; Accept waits
	// for one to close beyond it. If zero, no limit.
	MaxConns int
	// PerIP is how many connections one client address may have open;
	// more are closed at once. If zero, no limit. Unix-socket peers are
	// not counted.
	PerIP int
	// Log receives a line when a client address reaches PerIP (once per
	// address until it drops below). If nil, nothing is logged.
	Log *slog.Logger
}

// Listener wraps a net.Listener with connection limits.
type Listener struct {
	net.Listener
	cfg ListenerConfig
	log *slog.Logger

	slots  chan struct{} // one token per open connection; nil without MaxConns
	closed chan struct{}
	once   sync.Once
	open   atomic.Int64

	mu    sync.Mutex // protects perIP
	perIP map[netip.Addr]int
}

// Wrap returns l with cfg's limits; with a zero cfg it returns l itself.
func Wrap(l net.Listener, cfg ListenerConfig) net.Listener {
	if cfg.MaxConns <= 0 && cfg.PerIP <= 0 {
		return l
	}
	ll := &Listener{Listener: l, cfg: cfg, log: cfg.Log, closed: make(chan struct{}), perIP: map[netip.Addr]int{}}
	if ll.log == nil {
		ll.log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns > 0 {
		ll.slots = make(chan struct{}, cfg.MaxConns)
	}
	return ll
}

// Open is the number of connections accepted and not yet closed.
func (l *Listener) Open() int64 { return l.open.Load() }

// Accept waits for a free slot, then accepts; a connection over its
// address's PerIP is closed and the next one accepted.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		p, err := l.Enter()
		if err != nil {
			return nil, err
		}
		c, err := l.Listener.Accept()
		if err != nil {
			p.Done()
			return nil, err
		}
		if !p.Admit(c.RemoteAddr()) {
			c.Close()
			continue
		}
		return &conn{Conn: c, p: p.(*pass)}, nil
	}
}

// Unwrap returns the wrapped listener, for an accept loop that applies
// the limits itself through Enter (balancer.Gate).
func (l *Listener) Unwrap() net.Listener { return l.Listener }

// Enter waits for a free slot and returns the pass that holds it, or
// net.ErrClosed once the listener is closed.
func (l *Listener) Enter() (balancer.Pass, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	return &pass{l: l}, nil
}

// A pass holds one connection's slot and its count for its address.
type pass struct {
	l        *Listener
	addr     netip.Addr // counted against PerIP; invalid if not counted
	admitted bool
	done     atomic.Bool
}

// Admit counts the connection from remote; false when its address is at
// PerIP: the pass is then given back and the connection is to be closed.
func (p *pass) Admit(remote net.Addr) bool {
	addr, ok := p.l.admit(remote)
	if !ok {
		p.Done()
		return false
	}
	p.addr, p.admitted = addr, true
	p.l.open.Add(1)
	return true
}

// Done gives the slot back, once: the connection closed, or none came.
func (p *pass) Done() {
	if p.done.CompareAndSwap(false, true) {
		p.l.done(p.addr, p.admitted)
	}
}

// admit counts a connection from remote against its address: it reports
// false when the address is at PerIP, and an invalid addr when the
// connection is not counted at all.
func (l *Listener) admit(remote net.Addr) (netip.Addr, bool) {
	if l.cfg.PerIP <= 0 || remote == nil {
		return netip.Addr{}, true
	}
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return netip.Addr{}, true // a Unix socket: not counted
	}
	a := ap.Addr().Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.perIP[a]
	if n >= l.cfg.PerIP {
		if n == l.cfg.PerIP {
			l.log.Warn("client at its connection limit; further connections closed", "client", a.String(), "limit", l.cfg.PerIP)
			l.perIP[a] = n + 1 // logged: not again until it drops below
		}
		return netip.Addr{}, false
	}
	l.perIP[a] = n + 1
	return a, true
}

func (l *Listener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

func (l *Listener) done(addr netip.Addr, admitted bool) {
	if admitted {
		l.open.Add(-1)
	}
	if addr.IsValid() {
		l.mu.Lock()
		n := l.perIP[addr]
		if n > l.cfg.PerIP {
			n = l.cfg.PerIP // the logged marker
		}
		if n <= 1 {
			delete(l.perIP, addr)
		} else {
			l.perIP[addr] = n - 1
		}
		l.mu.Unlock()
	}
	l.release()
}

// Close closes the wrapped listener and ends a waiting Accept.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// conn gives its pass back on Close.
type conn struct {
	net.Conn
	p *pass
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.p.Done()
	return err
}

// ReadFrom keeps the wrapped connection's sendfile path.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite half-closes, when the wrapped connection can.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("limits: connection cannot half-close")
}

type writerOnly struct{ io.Writer }
