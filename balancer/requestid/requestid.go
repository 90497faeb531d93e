// Package requestid is the handler-chain link that gives every request an
// X-Request-ID: the one a trusted proxy sent (see balancer/trust), or one
// berth makes. The app receives it in the X-Request-ID field, and the
// links after this one (the access log) read it there.
//
// A generated id is a per-process random prefix and a counter,
// "5f1c0e7a9b2d4c68-1a2b": unique across berths and restarts with
// overwhelming odds, and made without allocating.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"

	"berth/balancer"
	"berth/balancer/trust"
)

// Field is the header field's name.
const Field = "X-Request-ID"

// MaxLen is the longest id kept from a trusted peer; a longer one, or one
// with other than visible ASCII, is replaced.
const MaxLen = 200

var hField = []byte(Field)

// Link is the request-id link of the handler chain.
type Link struct {
	next    balancer.Handler
	trusted trust.List
	prefix  [17]byte // 16 hex digits and '-'
	n       atomic.Uint64
	bufs    sync.Pool // of *[48]byte
}

// New returns the link in front of next. Ids from peers that trusted
// trusts are kept.
func New(next balancer.Handler, trusted trust.List) *Link {
	l := &Link{next: next, trusted: trusted}
	var r [8]byte
	rand.Read(r[:])
	hex.Encode(l.prefix[:16], r[:])
	l.prefix[16] = '-'
	l.bufs.New = func() any { return new([48]byte) }
	return l
}

// ServeExchange implements balancer.Handler.
func (l *Link) ServeExchange(x *balancer.Exchange) {
	v := x.Req.Header.Get(Field)
	if v != nil && valid(v) && l.trusted.Trusts(x.Peer) {
		l.next.ServeExchange(x)
		return
	}
	buf := l.bufs.Get().(*[48]byte)
	id := l.Next(buf[:0])
	if v != nil {
		x.Req.Header.Del(Field) // a client's id, replaced
	}
	x.Req.Header.Add(hField, id)
	l.next.ServeExchange(x)
	// The field must not outlive the buffer going back to the pool.
	x.Req.Header.Del(Field)
	l.bufs.Put(buf)
}

// Next appends a new id to dst.
func (l *Link) Next(dst []byte) []byte {
	dst = append(dst, l.prefix[:]...)
	return strconv.AppendUint(dst, l.n.Add(1), 16)
}

func valid(v []byte) bool {
	if len(v) == 0 || len(v) > MaxLen {
		return false
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
