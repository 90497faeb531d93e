package balancer

import (
	"context"
	"io"
	"net/netip"
	"time"

	"berth/balancer/h1"
	"berth/balancer/loop"
)

// Handler answers one request. The front door hands every request it reads
// to one Handler: the handler chain. Each feature (response cache, static
// files, request buffering, limits, metrics) is a link that wraps the next
// Handler; the last link is the Proxy, which carries the request to a
// worker. Links live in their own packages and are put together in cmd.
//
// A link answers a request itself through x.W, or hands it on with
// next.ServeExchange(x), possibly after replacing x.W with a wrapper that
// observes or changes the response, or x.Body with a buffered body.
type Handler interface {
	ServeExchange(x *Exchange)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(x *Exchange)

// ServeExchange calls f(x).
func (f HandlerFunc) ServeExchange(x *Exchange) { f(x) }

// Exchange is one request and its response as they pass down the handler
// chain. The front door owns it and reuses it for the connection's next
// request: a link must not keep it, or any slice of it, after its
// ServeExchange returns.
type Exchange struct {
	// Req is the request head. Links may change its fields (Req.Header)
	// before handing it on; the Proxy forwards what it finds.
	Req *h1.Request
	// Body is the request body, decoded from its framing. It reads
	// nothing (io.EOF at once) when the request has none. A link may
	// replace it, e.g. with a buffered copy; then it sets
	// Req.ContentLength to the new length (-1 if unknown).
	Body io.Reader
	// Client is the client's address: the peer's, or the one a trusted
	// proxy reported. Invalid for a Unix-socket peer.
	Client netip.AddrPort
	// Peer is the address of the connection's other end (zero for a Unix
	// socket).
	Peer netip.AddrPort
	// TLS reports whether the connection is TLS (the scheme is https).
	TLS bool
	// W is where the response goes. A link may replace it with a wrapper
	// for the rest of the chain.
	W ResponseWriter
	// Worker is the worker the Proxy carried the request to (the last
	// one tried), nil when none took it or a link answered first.
	// QueueWait is how long the request waited for a worker. The Proxy
	// sets both, for the links around it (metrics, access log) to read
	// once it returns.
	Worker    *Upstream
	QueueWait time.Duration
	// NoQueue says the request may not wait for a worker: when none is
	// free at once, the Proxy answers 503 at once instead of queueing.
	// Work berth does on its own (the cache's background refreshes) sets
	// it, so that it never takes a visitor's place in the queue.
	NoQueue bool

	now  time.Time // what Now returned, zero before its first call
	ctx  context.Context
	conn *conn     // the HTTP/1.1 connection, or nil
	h2   *h2Stream // the HTTP/2 stream, or nil
	loc  *local    // a request made by Do, or nil
}

// Detach is for a link about to wait on anything but a socket (a
// channel, a lock held long): on an event loop the exchange leaves the
// loop for the wait, which would otherwise stall every connection on it.
// Attach brings it back; both do nothing on the goroutine engine.
func (x *Exchange) Detach() {
	if x.conn != nil && x.conn.task != nil {
		x.conn.task.Detach()
	}
}

// Attach ends what Detach began.
func (x *Exchange) Attach() {
	if x.conn != nil && x.conn.task != nil {
		x.conn.task.Attach()
	}
}

// task is the event loop's Task the exchange runs as, nil on the
// goroutine engine or while detached.
func (x *Exchange) task() *loop.Task {
	if x.conn == nil || x.conn.task == nil {
		return nil
	}
	return x.conn.task
}

// Now reads the clock once per exchange: the first call reads it, later
// calls return the same reading. Links ahead of the Proxy that need the
// time of the request (the static link's expiry checks, the cache's
// freshness) take it from here, so that a request reads the clock once
// however many of them ask; reading it costs about as much as a link's
// own work on a cache hit. After a wait (the Proxy, a coalesced miss)
// the reading is old: a link that needs the time then reads the clock
// itself.
func (x *Exchange) Now() time.Time {
	if x.now.IsZero() {
		x.now = time.Now()
	}
	return x.now
}

// Context ends when the client goes away or berth stops at once; for a
// request made by Do, it is the context Do was given.
func (x *Exchange) Context() context.Context { return x.ctx }

// ResponseWriter is where a link writes its response. Its zero framing
// rules follow the client: the front door's writer chooses
// Content-Length, chunked coding or close-delimiting from
// resp.ContentLength and the client's version, and adds Connection: close
// when the connection ends after this response.
type ResponseWriter interface {
	// WriteHead sends the status line and fields of resp. An interim
	// response (1xx other than 101) may come before the final one; after
	// the final one, only body bytes follow. resp.ContentLength is the
	// body's length, or -1 when unknown (the body is then chunked to an
	// HTTP/1.1 client, close-delimited to an HTTP/1.0 one). Hop-by-hop
	// and framing fields in resp.Header are not sent.
	WriteHead(resp *h1.Response) error
	// Write sends body bytes.
	Write(p []byte) (int, error)
	// Flush sends what is buffered to the client now.
	Flush() error
}

// BodyCompleter is implemented by a ResponseWriter wrapper that must know
// a response body ended whole, not cut short (a chunked body's last chunk
// arrived): the Proxy calls BodyComplete then. The response cache stores
// a body of unknown length only after it.
type BodyCompleter interface {
	BodyComplete()
}
