// Package trust is berth's list of trusted proxies: the peers whose word
// about the client (X-Forwarded-*, Forwarded, X-Request-ID, a PROXY
// protocol header) berth believes.
//
// The zero List trusts what berth trusted before the list existed: a peer
// on loopback, and a peer on a Unix socket (whom the socket's file mode
// already vetted). A List built by New or Parse trusts exactly its
// prefixes, plus Unix-socket peers.
//
//	berth serve --trusted-proxy 10.0.0.0/24 --trusted-proxy 2001:db8::/64
package trust

import (
	"fmt"
	"net/netip"
	"strings"
)

// List is a set of trusted address prefixes. Its zero value trusts
// loopback (127.0.0.0/8, ::1); see the package doc.
type List struct {
	prefixes []netip.Prefix
	explicit bool
}

// New returns a List that trusts exactly prefixes (and Unix-socket peers).
// New() with no prefix trusts no TCP peer at all.
func New(prefixes ...netip.Prefix) List {
	ps := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		ps[i] = p.Masked()
	}
	return List{prefixes: ps, explicit: true}
}

// Parse reads CIDRs ("10.0.0.0/8", "2001:db8::/32") or single addresses
// ("192.0.2.7", taken as /32 or /128) into a List. An empty specs gives
// the zero List (loopback trusted).
func Parse(specs []string) (List, error) {
	if len(specs) == 0 {
		return List{}, nil
	}
	var ps []netip.Prefix
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return List{}, fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8: %w", s, err)
			}
			ps = append(ps, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return List{}, fmt.Errorf("trusted proxy %q: want an address or a CIDR such as 10.0.0.0/8: %w", s, err)
		}
		ps = append(ps, netip.PrefixFrom(a.Unmap(), a.BitLen()))
	}
	return New(ps...), nil
}

// Trusts reports whether a peer at ap is a trusted proxy. An invalid ap
// is a Unix-socket peer, which is trusted.
func (l List) Trusts(ap netip.AddrPort) bool {
	if !ap.IsValid() {
		return true
	}
	return l.TrustsAddr(ap.Addr())
}

// TrustsAddr reports whether a peer at address a is a trusted proxy.
func (l List) TrustsAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !l.explicit {
		return a.IsLoopback()
	}
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// String lists the prefixes, for logs.
func (l List) String() string {
	if !l.explicit {
		return "loopback"
	}
	s := make([]string, len(l.prefixes))
	for i, p := range l.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
