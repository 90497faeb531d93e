package balancer

import (
	"context"
	"io"
	"sync/atomic"

	"berth/balancer/h1"
)

// Do serves x, a request berth makes itself rather than one a client sent
// (the response cache refreshing an entry in the background), through h:
// the rest of a handler chain, in the end the Proxy. It returns when h
// does.
//
// The caller sets x.Req, x.W and x.TLS (the scheme the request is made
// for); a nil x.Body means no body. x.Client and x.Peer are normally left
// zero: the app then sees "X-Forwarded-For: unix" and "Forwarded:
// for=unknown", and no client's address. Do owns the rest of x while it
// runs, and puts x.W back before it returns.
//
// ctx bounds the request: when it ends, a wait for a worker in the queue
// or for a worker's answer ends too (the worker connection is closed),
// and x.Context returns it. x.W gets the response head and body as the
// links below wrote them; no front door frames them, and nothing reaches
// a client.
func Do(ctx context.Context, h Handler, x *Exchange) {
	l := &local{w: x.W, ctx: ctx}
	x.W, x.ctx, x.loc, x.conn, x.h2 = l, ctx, l, nil, nil
	if x.Body == nil {
		x.Body = noBody{}
	}
	stop := context.AfterFunc(ctx, l.abort)
	h.ServeExchange(x)
	stop()
	x.W, x.loc = l.w, nil
}

// local is the ResponseWriter and connection state of an exchange made by
// Do: it passes the response on, remembers whether the head went out, and
// holds the worker connection in use so that the end of ctx can break a
// wait on it.
type local struct {
	w         ResponseWriter
	ctx       context.Context
	wroteHead bool
	up        atomic.Pointer[upConn]
}

func (l *local) WriteHead(resp *h1.Response) error {
	if resp.Status >= 200 {
		l.wroteHead = true
	}
	return l.w.WriteHead(resp)
}

func (l *local) Write(p []byte) (int, error) { return l.w.Write(p) }
func (l *local) Flush() error                { return l.w.Flush() }

// BodyComplete passes the proxy's word on to the caller's writer.
func (l *local) BodyComplete() {
	if bc, ok := l.w.(BodyCompleter); ok {
		bc.BodyComplete()
	}
}

// setUpstream records the worker connection in use; if ctx has already
// ended, the connection is closed at once (abort may have run before it
// was recorded).
func (l *local) setUpstream(uc *upConn) {
	l.up.Store(uc)
	if uc != nil && l.ctx.Err() != nil {
		uc.c.Close()
	}
}

// abort breaks a wait on the worker when ctx ends.
func (l *local) abort() {
	if uc := l.up.Load(); uc != nil {
		uc.c.Close()
	}
}

// noBody is the body of a request that has none.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
