// Package proxyprotocol wraps berth's public listeners so that a load
// balancer in front (HAProxy's send-proxy-v2, nginx's proxy_protocol, a
// cloud LB) can tell berth the client's real address with the PROXY
// protocol, versions 1 and 2. Parsing is github.com/pires/go-proxyproto's;
// this package only decides whom to believe.
//
// The policy, per connection, by the peer's address (the load balancer's,
// before any header is read):
//
//   - a trusted peer (trust.List: --trusted-proxy, loopback by default, and
//     Unix-socket peers) MUST open with a PROXY header. A connection from it
//     without one fails on its first read and is closed: the protocol's
//     specification forbids guessing whether a header is present, and
//     guessing would let a client behind the balancer forge one.
//   - any other peer may speak plain HTTP and is known by its own address;
//     if it sends a PROXY header, the connection is closed at its first
//     read without a response.
//
// A header's LOCAL command (the balancer's own health checks) keeps the
// peer's own address.
//
// Behind this wrapper the front door's peer (Exchange.Peer) is the client
// the header named, so the forwarding fields that client sends are
// believed only if its own address is trusted: a balancer that speaks the
// PROXY protocol needs to add no X-Forwarded-For.
//
//	berth serve --proxy-protocol --trusted-proxy 10.0.0.2
package proxyprotocol

import (
	"net"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"berth/balancer/sockio"
	"berth/balancer/trust"
)

// Config configures Listen. The zero value trusts loopback peers.
type Config struct {
	// Trusted are the peers that must send a PROXY header, and the only
	// ones allowed to. The zero value trusts loopback and Unix-socket
	// peers.
	Trusted trust.List
	// HeaderTimeout is how long a trusted peer may take to send its
	// header. If zero, DefaultHeaderTimeout.
	HeaderTimeout time.Duration
}

// DefaultHeaderTimeout bounds the wait for a PROXY header. A balancer
// sends it with the connection's first packet.
const DefaultHeaderTimeout = 5 * time.Second

// Listen wraps l. Its connections' RemoteAddr is the client's address a
// trusted peer's header gave, else the peer's. RemoteAddr and the first
// Read wait for the header: call them on the connection's own goroutine,
// not the accept loop. Closing the returned listener closes l.
func Listen(l net.Listener, cfg Config) net.Listener {
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	return &proxyproto.Listener{
		// After the header, proxyproto reads and writes the connection
		// it was given: a sockio.Conn, like the front door's own.
		Listener:          sockio.Listener(l),
		ConnPolicy:        policy(cfg.Trusted),
		ReadHeaderTimeout: cfg.HeaderTimeout,
	}
}

// policy is the per-connection decision described in the package doc.
// It never returns an error, so Accept never drops a connection or stops.
func policy(trusted trust.List) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		switch a := o.Upstream.(type) {
		case *net.TCPAddr:
			if trusted.TrustsAddr(a.AddrPort().Addr()) {
				return proxyproto.REQUIRE, nil
			}
			return proxyproto.REJECT, nil
		default: // a Unix-socket peer: vetted by the socket's file mode
			return proxyproto.REQUIRE, nil
		}
	}
}
