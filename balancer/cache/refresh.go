package cache

import (
	"context"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// What refresh did.
type refreshResult int

const (
	refreshNone    refreshResult = iota // no refresh: one is under way, or the cache is closed
	refreshStarted                      // a background refresh is under way
	refreshHere                         // the entry cannot be refreshed by the cache itself
)

// refresh starts a background refresh of e, an entry within its
// stale-while-revalidate window that x found (RFC 5861 §3), unless a miss
// for the same key and variant is already at the app (it leads a flight
// that the refresh would duplicate), or Config.Unavailable says no worker
// can answer. The refresh leads that key's flight, so that misses arriving
// meanwhile wait for it instead of asking too. It never waits in the
// worker queue (Exchange.NoQueue): when no worker is free at once (all are
// held, say, while the app is busy), it gives up and the next request to
// find the entry stale tries again.
//
// It reports refreshHere for an entry whose Vary names a credential
// (Cookie, Authorization, Proxy-Authorization): the cache does not copy a
// client's credentials into a request of its own, so that client's own
// request must refresh it.
func (c *Cache) refresh(next balancer.Handler, x *balancer.Exchange, h *head, key, variant []byte, e *entry) refreshResult {
	vary := c.st.varyOf(e)
	for _, n := range vary {
		if n == "cookie" || n == "authorization" || n == "proxy-authorization" {
			return refreshHere
		}
	}
	if c.cfg.Unavailable != nil && c.cfg.Unavailable() {
		return refreshNone
	}
	c.bgMu.Lock()
	if c.bgDone {
		c.bgMu.Unlock()
		return refreshNone
	}
	c.bg.Add(1)
	c.bgMu.Unlock()
	f, fkey, leader := c.st.join(flightKey(nil, key, variant), time.Now())
	if f != nil && !leader {
		c.bg.Done()
		return refreshNone
	}
	req := refreshRequest(x.Req, h, vary, c.cfg.VaryCookies)
	go c.runRefresh(next, req, x.TLS, string(key), e, fkey, f)
	return refreshStarted
}

// runRefresh sends req to next, bounded by RefreshTimeout and by Close,
// and stores the response the way a miss would. A failure (an error
// status within the entry's stale windows, a timeout, a response that may
// not be stored) leaves the stale entry as it was; the next request to
// find it stale tries again.
func (c *Cache) runRefresh(next balancer.Handler, req *h1.Request, tls bool, key string, e *entry, fkey string, f *flight) {
	defer c.bg.Done()
	ctx, cancel := context.WithTimeout(c.bgCtx, c.cfg.RefreshTimeout)
	defer cancel()
	c.refreshes.Add(1)
	h := scanHead(req.Header)
	var r *recorder
	stored := false
	balancer.Do(ctx, balancer.HandlerFunc(func(x *balancer.Exchange) {
		r = c.newRecorder(x, &h, []byte(key), e)
		r.background = true
		stored = c.send(next, x, r, f)
	}), &balancer.Exchange{Req: req, W: discard{}, TLS: tls, NoQueue: true})
	if f != nil {
		c.st.land(fkey, f, stored)
	}
	if stored {
		return
	}
	_, path := splitKey(key)
	switch {
	case ctx.Err() != nil:
		c.log.Debug("background refresh abandoned; the stale entry stays", "path", path, "err", ctx.Err())
	case r.status == 0:
		c.log.Debug("background refresh got no response; the stale entry stays", "path", path)
	default:
		c.log.Debug("background refresh not stored; the stale entry stays", "path", path, "status", r.status)
	}
}

// refreshRequest builds the request of a background refresh from what the
// entry was keyed on, and from nothing else of the client's: GET, the
// request-target, Host, the fields the entry's Vary names, and one Cookie
// field holding only the configured cookies (Config.VaryCookies) with the
// client's values. vary must not name a credential (see refresh).
func refreshRequest(req *h1.Request, h *head, vary, cookies []string) *h1.Request {
	out := &h1.Request{Method: []byte("GET"), Target: clone(req.Target), Minor: 1, KeepAlive: true}
	fs := make(h1.Fields, 0, 2+len(vary))
	if h.hosts == 1 {
		fs = append(fs, h1.Field{Name: []byte("Host"), Value: clone(h.host)})
	} else {
		out.Minor = 0 // no Host: only HTTP/1.0 allows that, as the client did
	}
	for _, name := range vary {
		if name == "host" {
			continue
		}
		for _, f := range req.Header {
			if h1.EqualFold(f.Name, name) {
				fs = append(fs, h1.Field{Name: clone(f.Name), Value: clone(f.Value)})
			}
		}
	}
	var cookie []byte
	for _, name := range cookies {
		v, n, _ := cookieValue(req.Header, name)
		if n == 0 {
			continue
		}
		if len(cookie) > 0 {
			cookie = append(cookie, "; "...)
		}
		cookie = append(append(append(cookie, name...), '='), v...)
	}
	if cookie != nil {
		fs = append(fs, h1.Field{Name: []byte("Cookie"), Value: cookie})
	}
	out.Header = fs
	return out
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// Close ends the background refreshes: it cancels those under way (their
// entries stay as they were), waits for them to return, and starts no
// more. The cache goes on answering requests; it returns nil.
func (c *Cache) Close() error {
	c.bgMu.Lock()
	c.bgDone = true
	c.bgMu.Unlock()
	c.bgStop()
	c.bg.Wait()
	return nil
}

// discard is the client end of a background refresh: nobody.
type discard struct{}

func (discard) WriteHead(*h1.Response) error { return nil }
func (discard) Write(p []byte) (int, error)  { return len(p), nil }
func (discard) Flush() error                 { return nil }
