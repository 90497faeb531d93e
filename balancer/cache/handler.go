package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// Defaults of Config.
const (
	DefaultMaxBytes       = 64 << 20
	DefaultMaxEntry       = 1 << 20
	DefaultCoalesceWait   = 5 * time.Second
	DefaultStaleOnOutage  = time.Minute
	DefaultRefreshTimeout = 30 * time.Second
)

// Config configures a Cache. Its zero value is a working cache.
type Config struct {
	// MaxBytes is the budget for stored responses (bodies, fields and
	// bookkeeping). If zero, DefaultMaxBytes (64 MiB).
	MaxBytes int64
	// MaxEntry is the largest body stored; a larger response streams
	// through untouched and is not stored. If zero, DefaultMaxEntry
	// (1 MiB). It may not exceed MaxBytes.
	MaxEntry int64
	// VaryCookies names cookies whose values are part of every key:
	// requests with the same values share entries, other cookies are
	// ignored for the key (Passenger's --vary-turbocache-by-cookie). A
	// value must be unguessable (a session token, not a user id) for
	// anything private to be cached by it. If empty, cookies are not
	// part of the key unless a response says Vary: Cookie.
	VaryCookies []string
	// CoalesceWait bounds how long a miss waits for another request for
	// the same key to come back before it goes to the app itself. If
	// zero, DefaultCoalesceWait (5 s).
	CoalesceWait time.Duration
	// StaleOnOutage is how long past its freshness an entry may stand in
	// when the app cannot answer (a 502, 503 or 504, or Unavailable
	// reporting true), unless the response forbade stale use
	// (must-revalidate, proxy-revalidate, no-cache, s-maxage). Longer
	// windows given by the response's stale-if-error also apply. If
	// zero, DefaultStaleOnOutage (1 min); negative turns it off.
	StaleOnOutage time.Duration
	// RefreshTimeout bounds a background refresh (stale-while-revalidate):
	// past it the refresh is abandoned and the entry stays as it was. If
	// zero, DefaultRefreshTimeout (30 s).
	RefreshTimeout time.Duration
	// Unavailable, if set, reports whether no worker can answer now (the
	// app is restarting, or the queue is full); the cache then serves a
	// stale entry it may use without asking. If nil, the cache learns it
	// only from a 502, 503 or 504.
	Unavailable func() bool
	// Log receives, at debug level, why a response the app meant to be
	// cached (it had freshness) was not stored, and why a background
	// refresh failed. If nil, nothing is logged.
	Log *slog.Logger
}

// Stats are a Cache's counts since it was made.
type Stats struct {
	Hits   uint64 // answered from a fresh entry (304s included)
	Misses uint64 // went to the app (revalidations included)
	Stale  uint64 // answered from a stale entry
	Bypass uint64 // not for the cache: unsafe methods, bodies, upgrades, …
	// Refreshes counts the requests the cache itself sent to the app to
	// refresh a stale entry in the background (stale-while-revalidate);
	// they are not in Misses.
	Refreshes uint64
	Entries   int64 // entries stored now
	Bytes     int64 // bytes they take now
}

// Cache is a shared HTTP response cache (RFC 9111), one link of the
// handler chain. It is safe for concurrent use.
type Cache struct {
	cfg Config
	st  *store
	log *slog.Logger

	hits, misses, stale, bypass, refreshes atomic.Uint64

	// Background refreshes: each runs on its own goroutine, counted in
	// bg; Close cancels bgCtx and waits for them.
	bgCtx  context.Context
	bgStop context.CancelFunc
	bgMu   sync.Mutex // protects bgDone and the bg.Add that follows its check
	bgDone bool       // Close was called: no new refreshes
	bg     sync.WaitGroup

	bufs sync.Pool // of *outBuf, for answers from entries
	tags sync.Pool // of *tagger, for bypassed requests

	// Field names the cache adds, made once (never written to).
	nameAge, nameCacheStatus []byte
}

// New returns a Cache.
func New(cfg Config) (*Cache, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxEntry == 0 {
		cfg.MaxEntry = DefaultMaxEntry
	}
	if cfg.CoalesceWait == 0 {
		cfg.CoalesceWait = DefaultCoalesceWait
	}
	if cfg.StaleOnOutage == 0 {
		cfg.StaleOnOutage = DefaultStaleOnOutage
	}
	if cfg.StaleOnOutage < 0 {
		cfg.StaleOnOutage = 0
	}
	if cfg.RefreshTimeout == 0 {
		cfg.RefreshTimeout = DefaultRefreshTimeout
	}
	switch {
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("cache: size %d is negative", cfg.MaxBytes)
	case cfg.MaxEntry < 0:
		return nil, fmt.Errorf("cache: largest entry %d is negative", cfg.MaxEntry)
	case cfg.MaxEntry > cfg.MaxBytes:
		return nil, fmt.Errorf("cache: largest entry (%d bytes) exceeds the cache size (%d bytes)", cfg.MaxEntry, cfg.MaxBytes)
	case cfg.CoalesceWait < 0:
		return nil, errors.New("cache: coalescing wait is negative")
	case cfg.RefreshTimeout < 0:
		return nil, errors.New("cache: refresh timeout is negative")
	}
	for _, n := range cfg.VaryCookies {
		if !validCookieName(n) {
			return nil, fmt.Errorf("cache: %q is not a cookie name", n)
		}
	}
	cfg.VaryCookies = append([]string(nil), cfg.VaryCookies...)
	c := &Cache{cfg: cfg, st: newStore(cfg.MaxBytes, cfg.StaleOnOutage), log: cfg.Log,
		nameAge: []byte("Age"), nameCacheStatus: []byte("Cache-Status")}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.bufs.New = func() any { return &outBuf{fields: make(h1.Fields, 0, 16)} }
	c.tags.New = func() any { return new(tagger) }
	c.bgCtx, c.bgStop = context.WithCancel(context.Background())
	return c, nil
}

func validCookieName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || c == '=' || c == ';' || c == ',' || c == '"' {
			return false
		}
	}
	return true
}

// Stats returns the counts so far.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits:    c.hits.Load(),
		Misses:  c.misses.Load(),
		Stale:   c.stale.Load(),
		Bypass:  c.bypass.Load(),
		Entries: c.st.nEntries.Load(),
		Bytes:   c.st.nBytes.Load(),

		Refreshes: c.refreshes.Load(),
	}
}

// Purge removes the entries for host (every host if empty) whose path
// starts with pathPrefix (every path if empty), and reports how many.
func (c *Cache) Purge(host, pathPrefix string) int { return c.st.purge(host, pathPrefix) }

// Wrap returns the link: next is the rest of the chain (in the end, the
// proxy to the workers).
func (c *Cache) Wrap(next balancer.Handler) balancer.Handler { return &link{c: c, next: next} }

type link struct {
	c    *Cache
	next balancer.Handler
}

func (l *link) ServeExchange(x *balancer.Exchange) { l.c.serve(l.next, x) }

// Cache-Status values (RFC 9211 §2).
const (
	csHit         = "berth; hit"
	csMiss        = "berth; fwd=miss"
	csMissStored  = "berth; fwd=miss; stored"
	csCollapsed   = "berth; fwd=miss; collapsed"
	csStale       = "berth; fwd=stale"
	csStaleStored = "berth; fwd=stale; stored"
	csBypass      = "berth; fwd=bypass"
)

func (c *Cache) serve(next balancer.Handler, x *balancer.Exchange) {
	req := x.Req
	get := string(req.Method) == "GET"
	if !get && string(req.Method) != "HEAD" || req.Upgrade || req.ContentLength != 0 || req.Chunked {
		c.pass(next, x)
		return
	}
	h := scanHead(req.Header)
	if h.precond {
		// If-Match, If-Unmodified-Since, If-Range: the app decides.
		c.pass(next, x)
		return
	}
	var kb [256]byte
	key, ok := appendKey(kb[:0], req.Target, h.host, h.hosts, x.TLS)
	if !ok {
		c.pass(next, x)
		return
	}
	var vb [128]byte
	e, variant, ok := c.st.lookup(key, req.Header, c.cfg.VaryCookies, vb[:0])
	if !ok {
		c.pass(next, x)
		return
	}
	now := x.Now()
	if e != nil {
		age := e.age(now)
		if age < e.lifetime && !e.revalidate {
			c.hits.Add(1)
			c.answer(x.W, e, &h, age, !get, csHit, 0)
			return
		}
		stale := age - e.lifetime
		if !e.revalidate && stale < e.swr {
			// stale-while-revalidate (RFC 5861 §3): the stale entry
			// answers at once, and the first request to find it
			// starts one refresh in the background.
			cs := csHit
			if e.refreshing.CompareAndSwap(false, true) {
				switch c.refresh(next, x, &h, key, variant, e) {
				case refreshStarted:
					cs = csStale
				case refreshHere:
					if get {
						c.fetch(next, x, &h, key, e, nil)
						return
					}
					e.refreshing.Store(false)
				default:
					e.refreshing.Store(false)
				}
			}
			c.stale.Add(1)
			c.write(x.W, e, &h, age, !get, cs, 0, true)
			return
		}
		if c.cfg.Unavailable != nil && c.staleOK(e, stale, 503) && c.cfg.Unavailable() {
			c.stale.Add(1)
			c.answerStale(x.W, e, &h, age, !get, 0)
			return
		}
		if e.useless(now, c.cfg.StaleOnOutage) {
			e = nil
		}
	}
	if !get || h.noStore {
		// HEAD is served from GET entries but not stored; a request
		// that says no-store is not stored (§5.2.1.5).
		c.fetch(next, x, &h, key, e, nil)
		return
	}
	c.coalesce(next, x, &h, key, variant, e)
}

// coalesce sends one request per key to the app at a time: the first
// miss leads, the others wait (up to CoalesceWait) and then look the
// store up again. A waiter never gets the leader's response itself: if it
// was not stored, each waiter asks the app for its own.
func (c *Cache) coalesce(next balancer.Handler, x *balancer.Exchange, h *head, key, variant []byte, old *entry) {
	for round := 0; round < 2; round++ {
		now := x.Now() // the first round has not waited yet
		if round > 0 {
			now = time.Now()
		}
		var fb [512]byte
		f, fkey, leader := c.st.join(flightKey(fb[:0], key, variant), now)
		if f == nil {
			break // not storable lately: no queueing behind others
		}
		if leader {
			c.lead(next, x, h, key, old, f, fkey)
			return
		}
		start := time.Now()
		x.Detach()
		landed := c.wait(x, f)
		x.Attach()
		if !landed {
			break
		}
		if f.errStatus != 0 && old != nil {
			// The app failed the leader, who got the stale entry:
			// so do the waiters, rather than each trying again.
			if age := old.age(time.Now()); c.staleOK(old, age-old.lifetime, f.errStatus) {
				c.stale.Add(1)
				c.answerStale(x.W, old, h, age, false, f.errStatus)
				return
			}
		}
		if !f.stored {
			break
		}
		var vb [128]byte
		e, v, ok := c.st.lookup(key, x.Req.Header, c.cfg.VaryCookies, vb[:0])
		if !ok {
			break
		}
		if e != nil && !e.revalidate {
			// Fresh, or validated by the app while this request
			// waited (a max-age=0 entry is reused by the requests
			// collapsed onto its revalidation, not by later ones).
			age := e.age(time.Now())
			if age < e.lifetime || !e.respTime.Before(start) {
				c.hits.Add(1)
				c.answer(x.W, e, h, age, false, csCollapsed, 0)
				return
			}
		}
		// The stored response varies on something this request
		// differs in: try again under its own variant key.
		variant = v
		old = e
	}
	c.fetch(next, x, h, key, old, nil)
}

// lead fetches the response of flight f, which x leads, and lands f
// however the fetch ends (a panic included), so that its waiters go on.
// Its own function: a defer inside coalesce's loop would not be
// open-coded, and costs the runtime's slow defer path on every miss.
func (c *Cache) lead(next balancer.Handler, x *balancer.Exchange, h *head, key []byte, old *entry, f *flight, fkey string) {
	stored := false
	defer func() { c.st.land(fkey, f, stored) }()
	stored = c.fetch(next, x, h, key, old, f)
}

// flightKey appends the key of a flight for the variant of key to b.
func flightKey(b, key, variant []byte) []byte {
	return append(append(append(b, key...), 0xff), variant...)
}

// wait waits for f to land, the request to end, or CoalesceWait.
func (c *Cache) wait(x *balancer.Exchange, f *flight) bool {
	var done <-chan struct{}
	if ctx := x.Context(); ctx != nil {
		done = ctx.Done()
	}
	t := time.NewTimer(c.cfg.CoalesceWait)
	defer t.Stop()
	select {
	case <-f.done:
		return true
	case <-t.C:
		return false
	case <-done:
		return false
	}
}

// fetch sends the request on to the app through a recorder that passes the
// response to the client and stores it if the policy allows. old is the
// entry being revalidated or refreshed (nil on a plain miss); f is the
// flight this request leads, if any. It reports whether a response was
// stored.
func (c *Cache) fetch(next balancer.Handler, x *balancer.Exchange, h *head, key []byte, old *entry, f *flight) bool {
	c.misses.Add(1)
	r := c.newRecorder(x, h, key, old)
	stored := c.send(next, x, r, f)
	r.release()
	return stored
}

// recorders holds recorders for reuse: a miss costs no allocation unless
// its response is stored.
var recorders = sync.Pool{New: func() any { return new(recorder) }}

// newRecorder returns the recorder for x, which is about to go to the app,
// and adds old's validators to x's request unless the client sent its
// own conditions.
func (c *Cache) newRecorder(x *balancer.Exchange, h *head, key []byte, old *entry) *recorder {
	r := recorders.Get().(*recorder)
	*r = recorder{c: c, w: x.W, h: *h, old: old, get: string(x.Req.Method) == "GET",
		key: append(r.key[:0], key...), reqHeader: r.reqHeader[:0]}
	// The fields as the client sent them: the Vary values are read from
	// this copy when the response comes (later links may add fields).
	r.reqHeader = append(r.reqHeader, x.Req.Header...)
	if old != nil && r.get && !h.condition {
		// Revalidate (§4.3.1) with the stored validators.
		if old.etag != nil {
			x.Req.Header.Add([]byte("If-None-Match"), old.etag)
			r.revalidating = true
		}
		if old.lastModified != nil {
			x.Req.Header.Add([]byte("If-Modified-Since"), old.lastModified)
			r.revalidating = true
		}
	}
	return r
}

// send sends x on to the app through r, and stores what r recorded. f is
// the flight x leads, if any. It reports whether a response was stored.
func (c *Cache) send(next balancer.Handler, x *balancer.Exchange, r *recorder, f *flight) bool {
	r.reqTime = time.Now()
	x.W = r
	next.ServeExchange(x)
	x.W = r.w
	stored := r.finish()
	if f != nil {
		f.errStatus = r.errStatus
	}
	if r.old != nil && !stored {
		r.old.refreshing.Store(false)
	}
	return stored
}

// staleOK reports whether e, stale by this much, may stand in for a
// response with status (RFC 5861 §4, §4.2.4 of RFC 9111).
func (c *Cache) staleOK(e *entry, stale time.Duration, status int) bool {
	if e.noStale || e.revalidate || stale < 0 {
		return false
	}
	if !errorStatus(status) {
		return false
	}
	if stale < e.sie || stale < e.swr {
		return true
	}
	return e.outageOK && outageStatus(status) && stale < c.cfg.StaleOnOutage
}

// pass sends a request the cache does not handle on to the app, tagging
// its response fwd=bypass; after an unsafe method that succeeded it
// invalidates what the cache holds for the target (§4.4).
func (c *Cache) pass(next balancer.Handler, x *balancer.Exchange) {
	c.bypass.Add(1)
	t := c.tags.Get().(*tagger)
	t.c, t.w, t.done = c, x.W, false
	t.key = t.key[:0]
	if unsafeMethod(x.Req.Method) {
		host, n := h1Get(x.Req.Header, "host")
		if k, ok := appendKey(t.key, x.Req.Target, host, n, x.TLS); ok {
			t.key = k
		} else {
			t.key = k[:0]
		}
	}
	x.W = t
	next.ServeExchange(x)
	x.W = t.w
	t.c, t.w = nil, nil
	c.tags.Put(t)
}

// tagger is the ResponseWriter of a bypassed request.
type tagger struct {
	c    *Cache
	w    balancer.ResponseWriter
	key  []byte // primary key to invalidate on success, or empty
	done bool
}

func (t *tagger) WriteHead(resp *h1.Response) error {
	if t.done || resp.Status < 200 {
		return t.w.WriteHead(resp)
	}
	t.done = true
	if len(t.key) > 0 && invalidates(resp.Status) {
		k := string(t.key)
		t.c.st.invalidate(k)
		for _, name := range [...]string{"location", "content-location"} {
			if v, n := h1Get(resp.Header, name); n == 1 {
				if lk, ok := locationKey(k, v); ok {
					t.c.st.invalidate(lk)
				}
			}
		}
	}
	resp.Header.Add(t.c.nameCacheStatus, csValues[csBypass])
	return t.w.WriteHead(resp)
}

func (t *tagger) Write(p []byte) (int, error) { return t.w.Write(p) }
func (t *tagger) Flush() error                { return t.w.Flush() }

// outBuf is the head of an answer from an entry, pooled so that a hit
// allocates nothing.
type outBuf struct {
	resp   h1.Response
	fields h1.Fields
	age    [20]byte
	status [96]byte
}

// answer writes e to w: a 304 when the request's validators match (RFC
// 9110 §13.2.2), the head only if headOnly (HEAD). cs is the Cache-Status value;
// fwdStatus, if not zero, is added to it as fwd-status.
func (c *Cache) answer(w balancer.ResponseWriter, e *entry, h *head, age time.Duration, headOnly bool, cs string, fwdStatus int) error {
	return c.write(w, e, h, age, headOnly, cs, fwdStatus, false)
}

// answerStale writes a stale e, with its negative ttl in Cache-Status.
func (c *Cache) answerStale(w balancer.ResponseWriter, e *entry, h *head, age time.Duration, headOnly bool, fwdStatus int) error {
	cs := "berth; hit"
	if fwdStatus != 0 {
		cs = csStale
	}
	return c.write(w, e, h, age, headOnly, cs, fwdStatus, true)
}

func (c *Cache) write(w balancer.ResponseWriter, e *entry, h *head, age time.Duration, headOnly bool, cs string, fwdStatus int, ttl bool) error {
	b := c.bufs.Get().(*outBuf)
	status, fields, n := e.status, e.header, int64(len(e.body))
	if h != nil && e.status == 200 && notModified(h, e) {
		status, fields, n = 304, e.notMod, 0
	}
	b.fields = append(b.fields[:0], fields...)
	secs := int64(age / time.Second)
	b.fields = append(b.fields, h1.Field{Name: c.nameAge, Value: strconv.AppendInt(b.age[:0], secs, 10)})
	st := append(b.status[:0], cs...)
	if fwdStatus != 0 {
		st = append(st, "; fwd-status="...)
		st = strconv.AppendInt(st, int64(fwdStatus), 10)
	}
	if ttl {
		// Remaining freshness in whole seconds, rounded down: a stale
		// entry's is negative (RFC 9211 §2.5).
		left := e.lifetime - age
		secs := int64(left / time.Second)
		if left < 0 && left%time.Second != 0 {
			secs--
		}
		st = append(st, "; ttl="...)
		st = strconv.AppendInt(st, secs, 10)
	}
	b.fields = append(b.fields, h1.Field{Name: c.nameCacheStatus, Value: st})
	b.resp = h1.Response{Minor: 1, Status: status, Header: b.fields, ContentLength: n}
	err := w.WriteHead(&b.resp)
	if err == nil && !headOnly && n > 0 {
		_, err = w.Write(e.body)
	}
	clear(b.fields) // let evicted entries go
	b.resp.Header = nil
	c.bufs.Put(b)
	return err
}

// notModified reports whether a request's validators match e (RFC 9110
// §13.2.2: If-None-Match first; If-Modified-Since only without it).
func notModified(h *head, e *entry) bool {
	switch {
	case h.nINM == 1:
		return etagMatch(h.inm, e.etag)
	case h.nINM == 0 && h.nIMS == 1:
		return notModifiedSince(h.ims, e.lastModified)
	}
	return false
}

// recorder is the ResponseWriter of a request that went to the app: it
// passes the response to the client and keeps a copy to store.
type recorder struct {
	c         *Cache
	w         balancer.ResponseWriter
	h         head
	key       []byte
	reqHeader h1.Fields
	reqTime   time.Time
	get       bool

	old          *entry // being revalidated or refreshed
	revalidating bool   // validators of old were added to the request
	background   bool   // a background refresh: no client, nothing to answer
	status       int    // the final status the app sent

	final   bool // the final head went through
	swallow bool // the client got something else (a stale or revalidated entry)
	rec     bool // recording for the store
	e       *entry
	vary    []string
	cl      int64
	body    []byte
	ended   bool // the link below said the body is complete
	updated bool // a 304 refreshed old in the store
	// errStatus is the app's error status when the client got the stale
	// entry instead.
	errStatus int
}

// BodyComplete tells the recorder that the response body was read to its
// end, so that a response without Content-Length (chunked) may be stored.
// The proxy calls it, if it knows the method, after the last chunk.
func (r *recorder) BodyComplete() { r.ended = true }

func (r *recorder) WriteHead(resp *h1.Response) error {
	if r.final || resp.Status < 200 {
		if r.swallow {
			return nil
		}
		return r.w.WriteHead(resp)
	}
	r.final = true
	r.status = resp.Status
	now := time.Now()
	c := r.c
	if r.old != nil && errorStatus(resp.Status) {
		age := r.old.age(now)
		if c.staleOK(r.old, age-r.old.lifetime, resp.Status) {
			r.swallow = true
			r.errStatus = resp.Status
			if r.background {
				return nil // the stale entry stays for the clients
			}
			c.stale.Add(1)
			return c.answerStale(r.w, r.old, &r.h, age, !r.get, resp.Status)
		}
	}
	if r.revalidating && resp.Status == 304 {
		r.swallow = true
		return r.revalidated(resp, now)
	}
	d := evaluate(reqFacts{get: r.get, authorization: r.h.auth, noStore: r.h.noStore},
		resp.Status, resp.Header, r.reqTime, now)
	cl := resp.ContentLength
	if h1.NoBody(resp.Status) {
		cl = 0
	}
	r.cl = cl
	if !d.store && r.get && d.reason != "no explicit freshness" && d.reason != "status" {
		_, path := splitKey(string(r.key))
		c.log.Debug("response not stored", "path", path, "status", resp.Status, "reason", d.reason)
	} else if d.store && cl > c.cfg.MaxEntry {
		_, path := splitKey(string(r.key))
		c.log.Debug("response not stored", "path", path, "status", resp.Status, "reason", "larger than the largest entry", "bytes", cl)
	}
	if d.store && cl <= c.cfg.MaxEntry {
		vary := varyNames(resp.Header)
		variant, ok := appendVariant(nil, r.reqHeader, c.cfg.VaryCookies, vary)
		if ok {
			r.rec, r.vary = true, vary
			r.e = newEntry(string(r.key), string(variant), resp.Status, resp.Header, d, now)
			if cl > 0 {
				r.body = make([]byte, 0, cl)
			}
		}
	}
	cs := csMiss
	switch {
	case r.old != nil && r.rec && cl >= 0:
		cs = csStaleStored
	case r.old != nil:
		cs = csStale
	case r.rec && cl >= 0:
		cs = csMissStored
	}
	resp.Header.Add(c.nameCacheStatus, csValues[cs])
	return r.w.WriteHead(resp)
}

// csValues are the Cache-Status values a recorder or tagger adds, made once: a
// field value taken from a string would be a copy per response. Nothing
// writes to a field value after the head is written.
var csValues = func() map[string][]byte {
	m := map[string][]byte{}
	for _, cs := range []string{csMiss, csMissStored, csStale, csStaleStored, csBypass} {
		m[cs] = []byte(cs)
	}
	return m
}()

// release gives r back for reuse once its exchange is over; it keeps its
// buffers, not what they referred to.
func (r *recorder) release() {
	clear(r.reqHeader)
	*r = recorder{key: r.key[:0], reqHeader: r.reqHeader[:0]}
	recorders.Put(r)
}

// revalidated answers from old after the app said 304 (§4.3.3), storing
// old with the 304's fields (§4.3.4) unless the 304 carries a cookie.
// The cookie, if any, is this client's own, and goes to it alone.
func (r *recorder) revalidated(resp *h1.Response, now time.Time) error {
	cookie := hasField(resp.Header, "set-cookie") || hasField(resp.Header, "set-cookie2")
	c, old := r.c, r.old
	merged := make(h1.Fields, 0, len(old.header)+len(resp.Header))
	for _, f := range old.header {
		if _, n := h1Get(resp.Header, string(f.Name)); n == 0 || h1.EqualFold(f.Name, "content-type") {
			merged = append(merged, f)
		}
	}
	for _, f := range resp.Header {
		if !hopByHop(f.Name) && !h1.EqualFold(f.Name, "content-type") && !h1.EqualFold(f.Name, "cache-status") {
			merged = append(merged, f)
		}
	}
	d := evaluate(reqFacts{get: true, authorization: r.h.auth, noStore: r.h.noStore}, old.status, merged, r.reqTime, now)
	cs := csStale
	if d.store && !cookie {
		e := newEntry(old.primary, old.variant, old.status, merged, d, now)
		e.body = old.body
		e.size += int64(len(e.body))
		if c.st.insert(e, r.sameVary(old), now) {
			cs = csStaleStored
			old = e
			r.updated = true
		}
	}
	// Send the merged head (which keeps this client's Set-Cookie, if the
	// 304 had one) with the stored body.
	out := append(h1.Fields(nil), merged...)
	for _, f := range resp.Header {
		if h1.EqualFold(f.Name, "set-cookie") || h1.EqualFold(f.Name, "set-cookie2") {
			out = append(out, f)
		}
	}
	age := old.age(now)
	out = append(out,
		h1.Field{Name: c.nameAge, Value: strconv.AppendInt(nil, int64(age/time.Second), 10)},
		h1.Field{Name: c.nameCacheStatus, Value: []byte(cs + "; fwd-status=304")})
	err := r.w.WriteHead(&h1.Response{Minor: 1, Status: old.status, Header: out, ContentLength: int64(len(old.body))})
	if err == nil && r.get && len(old.body) > 0 {
		_, err = r.w.Write(old.body)
	}
	return err
}

// sameVary returns the Vary names the old entry was stored under.
func (r *recorder) sameVary(old *entry) []string { return r.c.st.varyOf(old) }

func (r *recorder) Write(p []byte) (int, error) {
	if r.swallow {
		return len(p), nil
	}
	if r.rec {
		if int64(len(r.body)+len(p)) > r.c.cfg.MaxEntry {
			r.rec, r.body = false, nil
		} else {
			r.body = append(r.body, p...)
		}
	}
	return r.w.Write(p)
}

func (r *recorder) Flush() error {
	if r.swallow {
		return nil
	}
	return r.w.Flush()
}

// finish stores the recorded response if all of it came: as many bytes as
// its Content-Length, or, without one, a body the link below said was
// complete. It reports whether the response was stored (or an entry was
// updated by a 304).
func (r *recorder) finish() bool {
	if r.updated {
		return true
	}
	if !r.rec {
		return false
	}
	if r.cl >= 0 && int64(len(r.body)) != r.cl || r.cl < 0 && !r.ended {
		return false
	}
	e := r.e
	if cap(r.body)-len(r.body) > len(r.body)/8+64 {
		// A chunked body grew by appending: keep only what it needs.
		r.body = append([]byte(nil), r.body...)
	}
	e.body = r.body
	e.size += int64(cap(e.body))
	return r.c.st.insert(e, r.vary, time.Now())
}

// newEntry makes an entry of a response head, copying what it keeps.
func newEntry(primary, variant string, status int, fs h1.Fields, d decision, now time.Time) *entry {
	e := &entry{
		primary:    primary,
		variant:    variant,
		status:     status,
		respTime:   now,
		initialAge: d.initialAge,
		lifetime:   d.lifetime,
		swr:        d.swr,
		sie:        d.sie,
		noStale:    d.noStale,
		outageOK:   d.outageOK,
		revalidate: d.revalidate,
		idx:        -1,
	}
	size := 0
	for _, f := range fs {
		if !hopByHop(f.Name) && !connectionNamed(fs, f.Name) {
			size += len(f.Name) + len(f.Value)
		}
	}
	hasDate := hasField(fs, "date")
	if !hasDate {
		size += 40
	}
	buf := make([]byte, 0, size)
	e.header = make(h1.Fields, 0, len(fs)+1)
	for _, f := range fs {
		if hopByHop(f.Name) || connectionNamed(fs, f.Name) {
			continue
		}
		s := len(buf)
		buf = append(buf, f.Name...)
		name := buf[s:len(buf):len(buf)]
		s = len(buf)
		buf = append(buf, f.Value...)
		val := buf[s:len(buf):len(buf)]
		e.header = append(e.header, h1.Field{Name: name, Value: val})
		switch {
		case h1.EqualFold(name, "etag"):
			e.etag = val
		case h1.EqualFold(name, "last-modified"):
			e.lastModified = val
		}
	}
	if !hasDate {
		// An origin without a clock: the cache dates it (RFC 9110 §6.6.1).
		s := len(buf)
		buf = append(buf, "Date"...)
		name := buf[s:len(buf):len(buf)]
		s = len(buf)
		buf = now.UTC().AppendFormat(buf, http.TimeFormat)
		e.header = append(e.header, h1.Field{Name: name, Value: buf[s:len(buf):len(buf)]})
	}
	for _, f := range e.header {
		if notModifiedField(f.Name) {
			e.notMod = append(e.notMod, f)
		}
	}
	e.size = int64(entryOverhead + len(primary) + len(variant) + cap(buf) + 48*cap(e.header))
	return e
}

// connectionNamed reports whether the Connection fields of fs name name
// (those fields are hop-by-hop too, RFC 9110 §7.6.1).
func connectionNamed(fs h1.Fields, name []byte) bool {
	for i := range fs {
		if h1.EqualFold(fs[i].Name, "connection") && fs[i:i+1].HasToken("connection", string(name)) {
			return true
		}
	}
	return false
}
