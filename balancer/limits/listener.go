package limits

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
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
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			case <-l.closed:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		addr, counted := l.admit(c)
		if !counted && addr.IsValid() {
			c.Close()
			l.release()
			continue
		}
		l.open.Add(1)
		return &conn{Conn: c, l: l, addr: addr}, nil
	}
}

// admit counts c against its address; it reports false when the address
// is at PerIP (addr is then valid), and an invalid addr when c is not
// counted at all.
func (l *Listener) admit(c net.Conn) (netip.Addr, bool) {
	if l.cfg.PerIP <= 0 {
		return netip.Addr{}, true
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
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
		return a, false
	}
	l.perIP[a] = n + 1
	return a, true
}

func (l *Listener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

func (l *Listener) done(addr netip.Addr) {
	l.open.Add(-1)
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

// conn gives its slot back once, on Close.
type conn struct {
	net.Conn
	l      *Listener
	addr   netip.Addr
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.done(c.addr)
	}
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
