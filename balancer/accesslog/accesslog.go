// Package accesslog is the handler-chain link that logs one entry per
// request through berth's logger. Under journald each key is its own
// field (see cmd/berth/logging), so that
//
//	journalctl -u shop BERTH_STATUS=502
//	journalctl -u shop BERTH_REQUEST_ID=5f1c0e7a9b2d4c68-1a2b
//
// find requests; standalone, slog's text handler writes one logfmt line
// per request on stderr:
//
//	time=… level=INFO msg=request app=shop berth.method=GET berth.path=/x berth.status=200 …
//
// It is off by default (--access-log); when off, cmd adds no link.
package accesslog

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	"berth/balancer"
	"berth/balancer/requestid"
	"berth/balancer/trust"
)

// Link is the access-log link.
type Link struct {
	next    balancer.Handler
	log     *slog.Logger
	trusted trust.List
}

// New returns the link in front of next, logging to log at Info level.
// Put it after the requestid link, so that the id is there to log. The
// client logged is the one a trusted proxy (per trusted) reported as the
// last X-Forwarded-For entry, else the connection's client.
func New(next balancer.Handler, log *slog.Logger, trusted trust.List) *Link {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Link{next: next, log: log, trusted: trusted}
}

// What the front door's writer tells of the response.
type (
	statuser interface{ Status() int }
	counter  interface{ Written() int64 }
)

// ServeExchange implements balancer.Handler.
func (l *Link) ServeExchange(x *balancer.Exchange) {
	start := time.Now()
	w := x.W
	l.next.ServeExchange(x)
	d := time.Since(start)
	status, bytes := 0, int64(-1)
	if s, ok := w.(statuser); ok {
		status = s.Status()
	}
	if c, ok := w.(counter); ok {
		bytes = c.Written()
	}
	worker := ""
	if x.Worker != nil {
		worker = x.Worker.Name
	}
	client := l.client(x)
	l.log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("berth.method", string(x.Req.Method)),
		slog.String("berth.path", string(x.Req.Path())),
		slog.Int("berth.status", status),
		slog.Int64("berth.bytes", bytes),
		slog.Float64("berth.duration", d.Seconds()),
		slog.Float64("berth.queue", x.QueueWait.Seconds()),
		slog.String("berth.worker", worker),
		slog.String("berth.cache", cacheStatus(x)),
		slog.String("berth.request_id", string(x.Req.Header.Get(requestid.Field))),
		slog.String("berth.client", client),
	)
}

// client is the address to log for x's client.
func (l *Link) client(x *balancer.Exchange) string {
	if l.trusted.Trusts(x.Peer) {
		if v := x.Req.Header.Get("X-Forwarded-For"); len(v) > 0 {
			if i := bytes.LastIndexByte(v, ','); i >= 0 {
				v = v[i+1:]
			}
			if v = bytes.TrimSpace(v); len(v) > 0 {
				return string(v)
			}
		}
	}
	if x.Client.IsValid() {
		return x.Client.Addr().String()
	}
	return "unix"
}

// cacheStatus is the response cache's verdict when a link before the
// proxy recorded one in the request's X-Berth-Cache field, else "-".
func cacheStatus(x *balancer.Exchange) string {
	if v := x.Req.Header.Get("X-Berth-Cache"); v != nil {
		return string(v)
	}
	return "-"
}
