package cache

import (
	"net/http"
	"time"

	"berth/balancer/h1"
)

// This file is the cacheability policy: pure functions of a request's
// facts and a response head, with no state and no network, so that every
// rule is a row of a table test. The RFC sections named here are RFC 9111
// (HTTP Caching) unless another RFC is named.

// maxDelta is what an overflowing delta-seconds value means (§1.2.2).
const maxDelta = 2147483648 * time.Second

// cacheControl is a parsed Cache-Control field (§5.2). A delta of -1 means
// the directive is absent; -2 means it was present but invalid or given
// twice, which makes the response stale on arrival (§4.2.1).
type cacheControl struct {
	maxAge, sMaxAge int64 // seconds
	swr, sie        int64 // stale-while-revalidate, stale-if-error (RFC 5861)

	noStore, noCache, private, public bool
	mustRevalidate, proxyRevalidate   bool
}

const (
	absent  = -1
	invalid = -2
)

// parseCacheControl reads every Cache-Control field of fs. Directive names
// are case-insensitive; arguments may be tokens or quoted strings (§5.2).
func parseCacheControl(fs h1.Fields) cacheControl {
	cc := cacheControl{maxAge: absent, sMaxAge: absent, swr: absent, sie: absent}
	for i := range fs {
		if !h1.EqualFold(fs[i].Name, "cache-control") {
			continue
		}
		v := fs[i].Value
		for len(v) > 0 {
			var name, arg []byte
			name, arg, v = nextDirective(v)
			switch {
			case h1.EqualFold(name, "max-age"):
				cc.maxAge = setDelta(cc.maxAge, arg)
			case h1.EqualFold(name, "s-maxage"):
				cc.sMaxAge = setDelta(cc.sMaxAge, arg)
			case h1.EqualFold(name, "stale-while-revalidate"):
				cc.swr = setDelta(cc.swr, arg)
			case h1.EqualFold(name, "stale-if-error"):
				cc.sie = setDelta(cc.sie, arg)
			case h1.EqualFold(name, "no-store"):
				cc.noStore = true
			case h1.EqualFold(name, "no-cache"):
				// The qualified form (no-cache="Set-Cookie") is
				// taken as the unqualified one: more restrictive
				// (§5.2.2.4 allows it).
				cc.noCache = true
			case h1.EqualFold(name, "private"):
				// Likewise private="field" is taken as private
				// (§5.2.2.7): a shared cache does not store it.
				cc.private = true
			case h1.EqualFold(name, "public"):
				cc.public = true
			case h1.EqualFold(name, "must-revalidate"):
				cc.mustRevalidate = true
			case h1.EqualFold(name, "proxy-revalidate"):
				cc.proxyRevalidate = true
			}
		}
	}
	return cc
}

// nextDirective splits the first directive off a Cache-Control value:
// name, its argument (unquoted, escapes kept) and the rest after the
// comma.
func nextDirective(v []byte) (name, arg, rest []byte) {
	v = trimOWS(v)
	i := 0
	for i < len(v) && v[i] != '=' && v[i] != ',' {
		i++
	}
	name = trimOWS(v[:i])
	if i == len(v) {
		return name, nil, nil
	}
	if v[i] == ',' {
		return name, nil, v[i+1:]
	}
	v = trimOWS(v[i+1:])
	if len(v) > 0 && v[0] == '"' {
		j := 1
		for j < len(v) && v[j] != '"' {
			if v[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(v) {
			return name, v[1:], nil
		}
		arg = v[1:j]
		v = v[j+1:]
		if k := indexByte(v, ','); k >= 0 {
			return name, arg, v[k+1:]
		}
		return name, arg, nil
	}
	if k := indexByte(v, ','); k >= 0 {
		return name, trimOWS(v[:k]), v[k+1:]
	}
	return name, trimOWS(v), nil
}

// setDelta records a delta-seconds argument: a second occurrence or a
// non-integer makes it invalid (§4.2.1: treat as stale); an overflow is
// 2^31 (§1.2.2).
func setDelta(prev int64, arg []byte) int64 {
	if prev != absent {
		return invalid
	}
	if len(arg) == 0 {
		return invalid
	}
	var n int64
	for _, c := range arg {
		if c < '0' || c > '9' {
			return invalid
		}
		if n < int64(maxDelta/time.Second) {
			n = n*10 + int64(c-'0')
		}
	}
	if n > int64(maxDelta/time.Second) {
		n = int64(maxDelta / time.Second)
	}
	return n
}

// storableStatus reports whether status is one RFC 9110 §15.1 calls
// heuristically cacheable — the only ones berth stores, and then only with
// explicit freshness. 206 is left out: berth does not combine ranges
// (§3.3, §3.4).
func storableStatus(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// reqFacts are the facts about a request that the policy needs.
type reqFacts struct {
	get           bool // the method is GET (HEAD is served from GET entries but not stored)
	authorization bool // the request carries Authorization
	noStore       bool // the request says Cache-Control: no-store
}

// decision is what the policy says about one response.
type decision struct {
	store  bool
	reason string // why not, when !store (for tests and logs)

	lifetime   time.Duration // freshness lifetime (§4.2.1)
	initialAge time.Duration // corrected initial age (§4.2.3)
	swr, sie   time.Duration // RFC 5861 windows past the lifetime
	noStale    bool          // must not be served stale at all (§4.2.4)
	// outageOK reports whether the entry may be served stale, within the
	// cache's own grace, when the app cannot answer (§4.2.4: a cache
	// that cannot reach the origin is "disconnected").
	outageOK   bool
	revalidate bool // no-cache: serve only after validation (§5.2.2.4)
}

// evaluate applies the storage rules of §3 (and berth's stricter ones) to a
// response to req. reqTime is when the request went forward and respTime
// when the response head arrived (§4.2.3).
func evaluate(req reqFacts, status int, h h1.Fields, reqTime, respTime time.Time) decision {
	var d decision
	no := func(why string) decision { return decision{reason: why} }
	if !req.get {
		return no("method") // §3: only GET is stored
	}
	if !storableStatus(status) {
		return no("status") // §3, RFC 9110 §15.1
	}
	if req.noStore {
		return no("request no-store") // §5.2.1.5
	}
	cc := parseCacheControl(h)
	if cc.noStore {
		return no("no-store") // §5.2.2.5
	}
	if cc.private {
		return no("private") // §5.2.2.7, §3: shared cache
	}
	if hasField(h, "set-cookie") || hasField(h, "set-cookie2") {
		// berth's rule: a cookie is one client's (RFC 6265 §8.6, §7 of
		// RFC 9111 on cache poisoning and leaks).
		return no("set-cookie")
	}
	if req.authorization && !cc.public && cc.sMaxAge == absent && !cc.mustRevalidate {
		return no("authorization") // §3.5
	}
	if varyStar(h) {
		return no("vary *") // §4.1: never matches
	}

	// Explicit freshness only (§4.2.1): s-maxage beats max-age beats
	// Expires. No heuristic freshness (§4.2.2).
	expires, nExpires := h1Get(h, "expires")
	switch {
	case cc.sMaxAge >= 0:
		d.lifetime = time.Duration(cc.sMaxAge) * time.Second
	case cc.sMaxAge == invalid:
		d.lifetime = 0
	case cc.maxAge >= 0:
		d.lifetime = time.Duration(cc.maxAge) * time.Second
	case cc.maxAge == invalid:
		d.lifetime = 0
	case nExpires == 1:
		date := respTime
		if dv, n := h1Get(h, "date"); n == 1 {
			if t, err := http.ParseTime(string(dv)); err == nil {
				date = t
			}
		}
		if t, err := http.ParseTime(string(expires)); err == nil && t.After(date) {
			d.lifetime = t.Sub(date) // §5.3: invalid Expires is in the past
		}
	case nExpires > 1:
		d.lifetime = 0 // §4.2.1: conflicting values, stale
	default:
		return no("no explicit freshness")
	}

	d.initialAge = initialAge(h, reqTime, respTime)
	if cc.swr > 0 {
		d.swr = time.Duration(cc.swr) * time.Second
	}
	if cc.sie > 0 {
		d.sie = time.Duration(cc.sie) * time.Second
	}
	switch {
	case cc.mustRevalidate || cc.proxyRevalidate || cc.noCache:
		// §5.2.2.2, §5.2.2.8, §5.2.2.4: never stale, whatever
		// stale-* says.
		d.noStale, d.swr, d.sie = true, 0, 0
	case cc.sMaxAge != absent:
		// §5.2.2.10: s-maxage implies proxy-revalidate; only the
		// origin's explicit stale-* permissions (RFC 5861 §3, §4)
		// allow stale, not berth's outage grace.
	default:
		d.outageOK = true
	}
	hasValidator := hasField(h, "etag") || hasField(h, "last-modified")
	if cc.noCache {
		// §5.2.2.4: store, but never reuse without validation; worth
		// storing only when it can be validated.
		if !hasValidator {
			return no("no-cache without validator")
		}
		d.revalidate = true
		d.store = true
		return d
	}
	if d.lifetime <= d.initialAge && !hasValidator && d.swr == 0 && d.sie == 0 {
		// Stale on arrival and nothing to revalidate with: no use.
		return no("stale on arrival")
	}
	d.store = true
	return d
}

// initialAge is the corrected initial age of §4.2.3.
func initialAge(h h1.Fields, reqTime, respTime time.Time) time.Duration {
	var apparent, ageValue time.Duration
	if dv, n := h1Get(h, "date"); n == 1 {
		if t, err := http.ParseTime(string(dv)); err == nil && respTime.After(t) {
			apparent = respTime.Sub(t)
		}
	}
	if av, n := h1Get(h, "age"); n >= 1 {
		if s := setDelta(absent, av); s >= 0 {
			ageValue = time.Duration(s) * time.Second
		}
	}
	corrected := ageValue + respTime.Sub(reqTime)
	if apparent > corrected {
		return apparent
	}
	return corrected
}

// varyStar reports whether a Vary field lists "*" (§4.1).
func varyStar(h h1.Fields) bool { return h.HasToken("vary", "*") }

// varyNames returns the lower-cased names a response's Vary fields list,
// in order, without duplicates.
func varyNames(h h1.Fields) []string {
	var names []string
	for i := range h {
		if !h1.EqualFold(h[i].Name, "vary") {
			continue
		}
		v := h[i].Value
		for len(v) > 0 {
			var item []byte
			item, v = h1.NextItem(v, ',')
			item = trimOWS(item)
			if len(item) == 0 {
				continue
			}
			n := lower(item)
			dup := false
			for _, m := range names {
				if m == n {
					dup = true
				}
			}
			if !dup {
				names = append(names, n)
			}
		}
	}
	return names
}

// unsafeMethod reports whether a method is not safe (RFC 9110 §9.2.1):
// a successful one invalidates what the cache holds for its URI (§4.4).
func unsafeMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return false
	}
	return true
}

// invalidates reports whether a response status to an unsafe method
// invalidates (§4.4: a non-error status, 2xx or 3xx).
func invalidates(status int) bool { return status >= 200 && status < 400 }

// errorStatus reports whether a status lets a stale entry stand in for
// the response (RFC 5861 §4: 500, 502, 503, 504).
func errorStatus(status int) bool {
	switch status {
	case 500, 502, 503, 504:
		return true
	}
	return false
}

// outageStatus reports whether a status says no worker could answer:
// berth's own 502, 503 and 504 (and an app that says the same).
func outageStatus(status int) bool { return status == 502 || status == 503 || status == 504 }

// etagMatch reports whether an If-None-Match value matches etag by the
// weak comparison (RFC 9110 §13.1.2, §8.8.3.2).
func etagMatch(inm, etag []byte) bool {
	if len(etag) == 0 {
		return false
	}
	et := stripWeak(etag)
	v := inm
	for len(v) > 0 {
		var item []byte
		item, v = h1.NextItem(v, ',')
		item = trimOWS(item)
		if len(item) == 1 && item[0] == '*' {
			return true
		}
		if string(stripWeak(item)) == string(et) {
			return true
		}
	}
	return false
}

func stripWeak(t []byte) []byte {
	if len(t) >= 2 && t[0] == 'W' && t[1] == '/' {
		return t[2:]
	}
	return t
}

// notModifiedSince reports whether a stored Last-Modified is no later than
// an If-Modified-Since date (RFC 9110 §13.1.3). An equal string is the
// common case and needs no parsing.
func notModifiedSince(ims, lastModified []byte) bool {
	if len(lastModified) == 0 || len(ims) == 0 {
		return false
	}
	if string(ims) == string(lastModified) {
		return true
	}
	t, err := http.ParseTime(string(ims))
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(string(lastModified))
	if err != nil {
		return false
	}
	return !lm.After(t)
}

// hopByHop reports whether a response field is not stored: the
// connection's own fields (RFC 9110 §7.6.1), framing, which the front door
// writes itself, Age, which the cache computes (§4.2.3, §5.1), and cookies.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return h1.EqualFold(name, "te")
	case 3:
		return h1.EqualFold(name, "age")
	case 7:
		return h1.EqualFold(name, "trailer") || h1.EqualFold(name, "upgrade")
	case 10:
		return h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive") || h1.EqualFold(name, "set-cookie")
	case 11:
		return h1.EqualFold(name, "set-cookie2")
	case 14:
		return h1.EqualFold(name, "content-length")
	case 16:
		return h1.EqualFold(name, "proxy-connection")
	case 17:
		return h1.EqualFold(name, "transfer-encoding")
	}
	return false
}

// notModifiedField reports whether a stored field is sent in a 304 (RFC
// 9110 §15.4.5): the ones a 200 would have carried that guide caches.
func notModifiedField(name []byte) bool {
	for _, n := range [...]string{"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"} {
		if h1.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// hasField reports whether h has a field named name (lower case).
func hasField(h h1.Fields, name string) bool {
	for i := range h {
		if h1.EqualFold(h[i].Name, name) {
			return true
		}
	}
	return false
}

// h1Get returns the first value of name and how many fields carry it.
func h1Get(h h1.Fields, name string) ([]byte, int) {
	var v []byte
	n := 0
	for i := range h {
		if h1.EqualFold(h[i].Name, name) {
			if n == 0 {
				v = h[i].Value
			}
			n++
		}
	}
	return v, n
}

func lower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}
