package cache

import (
	"testing"
	"time"

	"berth/balancer/h1"
)

func fields(kv ...string) h1.Fields {
	var fs h1.Fields
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, h1.Field{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return fs
}

var get = reqFacts{get: true}

func TestEvaluate(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	date := t0.Format("Mon, 02 Jan 2006 15:04:05 GMT")
	in60 := t0.Add(60 * time.Second).Format("Mon, 02 Jan 2006 15:04:05 GMT")
	ago := t0.Add(-time.Hour).Format("Mon, 02 Jan 2006 15:04:05 GMT")
	tests := []struct {
		name, cite string
		req        reqFacts
		status     int
		h          h1.Fields
		store      bool
		lifetime   time.Duration
		check      func(t *testing.T, d decision)
	}{
		{name: "max-age", cite: "RFC 9111 §5.2.2.1", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60"), store: true, lifetime: 60 * time.Second},
		{name: "s-maxage beats max-age", cite: "RFC 9111 §4.2.1, §5.2.2.10", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60, s-maxage=5"), store: true, lifetime: 5 * time.Second},
		{name: "s-maxage beats max-age in other order", cite: "RFC 9111 §4.2.1", req: get, status: 200,
			h: fields("Cache-Control", "s-maxage=5", "Cache-Control", "max-age=60"), store: true, lifetime: 5 * time.Second},
		{name: "max-age beats Expires", cite: "RFC 9111 §5.3", req: get, status: 200,
			h: fields("Date", date, "Expires", ago, "Cache-Control", "max-age=10"), store: true, lifetime: 10 * time.Second},
		{name: "Expires minus Date", cite: "RFC 9111 §4.2.1", req: get, status: 200,
			h: fields("Date", date, "Expires", in60), store: true, lifetime: 60 * time.Second},
		{name: "invalid Expires is in the past", cite: "RFC 9111 §5.3", req: get, status: 200,
			h: fields("Expires", "0"), store: false},
		{name: "two Expires fields: stale", cite: "RFC 9111 §4.2.1", req: get, status: 200,
			h: fields("Date", date, "Expires", in60, "Expires", in60), store: false},
		{name: "no explicit freshness", cite: "RFC 9111 §4.2.2 (berth: no heuristics)", req: get, status: 200,
			h: fields("Content-Type", "text/plain"), store: false},
		{name: "public alone is not freshness", cite: "RFC 9111 §5.2.2.9 (berth: no heuristics)", req: get, status: 200,
			h: fields("Cache-Control", "public"), store: false},
		{name: "Last-Modified alone is not freshness", cite: "RFC 9111 §4.2.2", req: get, status: 200,
			h: fields("Last-Modified", ago), store: false},
		{name: "no-store", cite: "RFC 9111 §5.2.2.5", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60, no-store"), store: false},
		{name: "NO-STORE in capitals", cite: "RFC 9111 §5.2 (case-insensitive)", req: get, status: 200,
			h: fields("Cache-Control", "Max-Age=60, NO-STORE"), store: false},
		{name: "private", cite: "RFC 9111 §5.2.2.7", req: get, status: 200,
			h: fields("Cache-Control", "private, max-age=60"), store: false},
		{name: "qualified private", cite: "RFC 9111 §5.2.2.7", req: get, status: 200,
			h: fields("Cache-Control", `max-age=60, private="X-User"`), store: false},
		{name: "quoted comma in a directive does not split", cite: "RFC 9111 §5.2", req: get, status: 200,
			h: fields("Cache-Control", `private="a, no-store", max-age=60`), store: false},
		{name: "request no-store", cite: "RFC 9111 §5.2.1.5", req: reqFacts{get: true, noStore: true}, status: 200,
			h: fields("Cache-Control", "max-age=60"), store: false},
		{name: "Set-Cookie is never stored", cite: "RFC 9111 §7 / RFC 6265 §8 (berth rule)", req: get, status: 200,
			h: fields("Cache-Control", "public, max-age=60", "Set-Cookie", "sid=1"), store: false},
		{name: "set-cookie in lower case", cite: "berth rule", req: get, status: 200,
			h: fields("cache-control", "max-age=60", "set-cookie", "sid=1"), store: false},
		{name: "Authorization without permission", cite: "RFC 9111 §3.5", req: reqFacts{get: true, authorization: true}, status: 200,
			h: fields("Cache-Control", "max-age=60"), store: false},
		{name: "Authorization with public", cite: "RFC 9111 §3.5", req: reqFacts{get: true, authorization: true}, status: 200,
			h: fields("Cache-Control", "public, max-age=60"), store: true, lifetime: time.Minute},
		{name: "Authorization with s-maxage", cite: "RFC 9111 §3.5", req: reqFacts{get: true, authorization: true}, status: 200,
			h: fields("Cache-Control", "s-maxage=60"), store: true, lifetime: time.Minute},
		{name: "Authorization with must-revalidate", cite: "RFC 9111 §3.5", req: reqFacts{get: true, authorization: true}, status: 200,
			h: fields("Cache-Control", "max-age=60, must-revalidate"), store: true, lifetime: time.Minute},
		{name: "Vary: * never matches", cite: "RFC 9111 §4.1", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60", "Vary", "Accept-Encoding, *"), store: false},
		{name: "Vary on fields is stored", cite: "RFC 9111 §4.1", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60", "Vary", "Accept-Encoding"), store: true, lifetime: time.Minute},
		{name: "POST is not stored", cite: "RFC 9111 §3 (berth stores GET only)", req: reqFacts{}, status: 200,
			h: fields("Cache-Control", "max-age=60"), store: false},
		{name: "404 with freshness", cite: "RFC 9110 §15.1", req: get, status: 404,
			h: fields("Cache-Control", "max-age=60"), store: true, lifetime: time.Minute},
		{name: "301 with freshness", cite: "RFC 9110 §15.1", req: get, status: 301,
			h: fields("Cache-Control", "max-age=60"), store: true, lifetime: time.Minute},
		{name: "404 without freshness", cite: "RFC 9110 §15.1, RFC 9111 §4.2.2", req: get, status: 404,
			h: nil, store: false},
		{name: "302 is not on the list", cite: "RFC 9110 §15.1 (berth: listed statuses only)", req: get, status: 302,
			h: fields("Cache-Control", "max-age=60"), store: false},
		{name: "500 is not on the list", cite: "RFC 9110 §15.1", req: get, status: 500,
			h: fields("Cache-Control", "max-age=60"), store: false},
		{name: "206 is not stored", cite: "RFC 9111 §3.3", req: get, status: 206,
			h: fields("Cache-Control", "max-age=60"), store: false},
		{name: "invalid max-age is stale", cite: "RFC 9111 §4.2.1, §1.2.2", req: get, status: 200,
			h: fields("Cache-Control", "max-age=6O"), store: false},
		{name: "two max-age: stale", cite: "RFC 9111 §4.2.1", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60, max-age=10"), store: false},
		{name: "quoted max-age accepted", cite: "RFC 9111 §5.2", req: get, status: 200,
			h: fields("Cache-Control", `max-age="30"`), store: true, lifetime: 30 * time.Second},
		{name: "overflowing max-age is 2^31", cite: "RFC 9111 §1.2.2", req: get, status: 200,
			h: fields("Cache-Control", "max-age=99999999999999999999"), store: true, lifetime: maxDelta},
		{name: "max-age=0 without validator", cite: "RFC 9111 §4.2.1", req: get, status: 200,
			h: fields("Cache-Control", "max-age=0"), store: false},
		{name: "max-age=0 with ETag is stored for revalidation", cite: "RFC 9111 §4.3", req: get, status: 200,
			h: fields("Cache-Control", "max-age=0", "ETag", `"a"`), store: true, lifetime: 0},
		{name: "no-cache with validator: stored, always revalidated", cite: "RFC 9111 §5.2.2.4", req: get, status: 200,
			h: fields("Cache-Control", "no-cache, max-age=60", "ETag", `"a"`), store: true, lifetime: time.Minute,
			check: func(t *testing.T, d decision) {
				if !d.revalidate || !d.noStale {
					t.Errorf("revalidate=%v noStale=%v, want both", d.revalidate, d.noStale)
				}
			}},
		{name: "no-cache without validator", cite: "RFC 9111 §5.2.2.4", req: get, status: 200,
			h: fields("Cache-Control", "no-cache, max-age=60"), store: false},
		{name: "qualified no-cache is no-cache", cite: "RFC 9111 §5.2.2.4", req: get, status: 200,
			h: fields("Cache-Control", `no-cache="Set-Cookie", max-age=60`), store: false},
		{name: "Age counts against freshness", cite: "RFC 9111 §4.2.3", req: get, status: 200,
			h: fields("Cache-Control", "max-age=60", "Age", "100"), store: false},
		{name: "stale-while-revalidate and stale-if-error", cite: "RFC 5861 §3, §4", req: get, status: 200,
			h: fields("Cache-Control", "max-age=1, stale-while-revalidate=30, stale-if-error=600"), store: true, lifetime: time.Second,
			check: func(t *testing.T, d decision) {
				if d.swr != 30*time.Second || d.sie != 600*time.Second || d.noStale || !d.outageOK {
					t.Errorf("swr=%v sie=%v noStale=%v outageOK=%v", d.swr, d.sie, d.noStale, d.outageOK)
				}
			}},
		{name: "must-revalidate forbids stale", cite: "RFC 9111 §5.2.2.2, §4.2.4", req: get, status: 200,
			h: fields("Cache-Control", "max-age=1, must-revalidate, stale-if-error=600"), store: true, lifetime: time.Second,
			check: func(t *testing.T, d decision) {
				if !d.noStale || d.sie != 0 || d.outageOK {
					t.Errorf("noStale=%v sie=%v outageOK=%v", d.noStale, d.sie, d.outageOK)
				}
			}},
		{name: "proxy-revalidate forbids stale", cite: "RFC 9111 §5.2.2.8", req: get, status: 200,
			h: fields("Cache-Control", "max-age=1, proxy-revalidate"), store: true, lifetime: time.Second,
			check: func(t *testing.T, d decision) {
				if !d.noStale {
					t.Error("stale allowed")
				}
			}},
		{name: "s-maxage: stale only by explicit stale-if-error", cite: "RFC 9111 §5.2.2.10, RFC 5861 §4", req: get, status: 200,
			h: fields("Cache-Control", "s-maxage=1, stale-if-error=60"), store: true, lifetime: time.Second,
			check: func(t *testing.T, d decision) {
				if d.outageOK || d.sie != time.Minute {
					t.Errorf("outageOK=%v sie=%v", d.outageOK, d.sie)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := evaluate(tt.req, tt.status, tt.h, t0, t0)
			if d.store != tt.store {
				t.Fatalf("%s: store = %v (%s), want %v", tt.cite, d.store, d.reason, tt.store)
			}
			if d.store && d.lifetime != tt.lifetime {
				t.Errorf("%s: lifetime = %v, want %v", tt.cite, d.lifetime, tt.lifetime)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return t0.Add(d).Format("Mon, 02 Jan 2006 15:04:05 GMT") }
	tests := []struct {
		name, cite string
		h          h1.Fields
		reqTime    time.Time
		want       time.Duration
	}{
		{"no Date, no Age", "RFC 9111 §4.2.3", nil, t0, 0},
		{"Age field", "RFC 9111 §4.2.3 corrected_age_value", fields("Age", "7"), t0, 7 * time.Second},
		{"response delay counts", "RFC 9111 §4.2.3 response_delay", fields("Age", "7"), t0.Add(-2 * time.Second), 9 * time.Second},
		{"apparent age from Date", "RFC 9111 §4.2.3 apparent_age", fields("Date", date(-30*time.Second)), t0, 30 * time.Second},
		{"Date in the future is no age", "RFC 9111 §4.2.3", fields("Date", date(time.Hour)), t0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := initialAge(tt.h, tt.reqTime, t0); got != tt.want {
				t.Errorf("%s: %v, want %v", tt.cite, got, tt.want)
			}
		})
	}
}

func TestConditionals(t *testing.T) {
	lm := "Sat, 28 Nov 2026 10:00:00 GMT"
	tests := []struct {
		name, cite string
		inm, etag  string
		match      bool
	}{
		{"same strong tag", "RFC 9110 §13.1.2", `"a"`, `"a"`, true},
		{"weak comparison", "RFC 9110 §8.8.3.2", `W/"a"`, `"a"`, true},
		{"weak stored tag", "RFC 9110 §8.8.3.2", `"a"`, `W/"a"`, true},
		{"one of a list", "RFC 9110 §13.1.2", `"x", "a"`, `"a"`, true},
		{"star", "RFC 9110 §13.1.2", `*`, `"a"`, true},
		{"other tag", "RFC 9110 §13.1.2", `"b"`, `"a"`, false},
		{"no stored tag", "RFC 9110 §13.1.2", `"a"`, ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := etagMatch([]byte(tt.inm), []byte(tt.etag)); got != tt.match {
				t.Errorf("%s: etagMatch(%s, %s) = %v", tt.cite, tt.inm, tt.etag, got)
			}
		})
	}
	ims := []struct {
		name, cite string
		ims, lm    string
		want       bool
	}{
		{"same date", "RFC 9110 §13.1.3", lm, lm, true},
		{"later date", "RFC 9110 §13.1.3", "Sun, 29 Nov 2026 10:00:00 GMT", lm, true},
		{"earlier date", "RFC 9110 §13.1.3", "Fri, 27 Nov 2026 10:00:00 GMT", lm, false},
		{"invalid date", "RFC 9110 §13.1.3", "yesterday", lm, false},
		{"no Last-Modified", "RFC 9110 §13.1.3", lm, "", false},
	}
	for _, tt := range ims {
		t.Run(tt.name, func(t *testing.T) {
			if got := notModifiedSince([]byte(tt.ims), []byte(tt.lm)); got != tt.want {
				t.Errorf("%s: %v, want %v", tt.cite, got, tt.want)
			}
		})
	}
}

func TestHopByHop(t *testing.T) {
	for _, n := range []string{"Connection", "keep-alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Content-Length", "Age", "Set-Cookie", "set-cookie2"} {
		if !hopByHop([]byte(n)) {
			t.Errorf("RFC 9110 §7.6.1 / berth: %s is stored", n)
		}
	}
	for _, n := range []string{"Content-Type", "ETag", "Cache-Control", "Vary", "Date"} {
		if hopByHop([]byte(n)) {
			t.Errorf("%s is not stored", n)
		}
	}
}

func TestUnsafeMethods(t *testing.T) {
	for m, unsafe := range map[string]bool{"GET": false, "HEAD": false, "OPTIONS": false, "TRACE": false,
		"POST": true, "PUT": true, "DELETE": true, "PATCH": true, "PURGE": true} {
		if unsafeMethod([]byte(m)) != unsafe {
			t.Errorf("RFC 9110 §9.2.1: %s unsafe = %v", m, !unsafe)
		}
	}
	for s, inv := range map[int]bool{200: true, 204: true, 303: true, 400: false, 404: false, 500: false} {
		if invalidates(s) != inv {
			t.Errorf("RFC 9111 §4.4: status %d invalidates = %v", s, !inv)
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name, cite   string
		target, host string
		hosts        int
		tls          bool
		want         string
		ok           bool
	}{
		{"origin form", "RFC 9111 §2, RFC 9110 §7.1", "/a?b=1", "example.com", 1, false, "hexample.com/a?b=1", true},
		{"host case and default port", "RFC 9110 §4.2.3", "/a", "Example.COM:80", 1, false, "hexample.com/a", true},
		{"https default port", "RFC 9110 §4.2.3", "/a", "example.com:443", 1, true, "sexample.com/a", true},
		{"other port kept", "RFC 9110 §4.2.3", "/a", "example.com:8080", 1, false, "hexample.com:8080/a", true},
		{"scheme is part of the key", "RFC 9110 §4.2.3", "/a", "example.com", 1, true, "sexample.com/a", true},
		{"no Host (HTTP/1.0)", "RFC 9112 §3.2", "/a", "", 0, false, "h/a", true},
		{"two Host fields", "RFC 9112 §3.2", "/a", "a", 2, false, "", false},
		{"absolute form", "RFC 9112 §3.2.2", "http://evil/a", "example.com", 1, false, "", false},
		{"asterisk form", "RFC 9112 §3.2.4", "*", "example.com", 1, false, "", false},
		{"slash in Host", "RFC 9110 §7.2", "/a", "example.com/x", 1, false, "", false},
		{"space in Host", "RFC 9110 §7.2", "/a", "exa mple", 1, false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, ok := appendKey(nil, []byte(tt.target), []byte(tt.host), tt.hosts, tt.tls)
			if ok != tt.ok || ok && string(k) != tt.want {
				t.Errorf("%s: %q %v, want %q %v", tt.cite, k, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLocationKey(t *testing.T) {
	req := "hexample.com/items/1"
	tests := []struct {
		loc, want string
		ok        bool
	}{
		{"/items", "hexample.com/items", true},
		{"/items?page=2#top", "hexample.com/items?page=2", true},
		{"http://EXAMPLE.com/items", "hexample.com/items", true},
		{"http://example.com", "hexample.com/", true},
		{"http://other.example/items", "", false},
		{"http://example.com.evil/items", "", false},
		{"https://example.com/items", "", false}, // another origin: other scheme
		{"//example.com/items", "", false},
		{"items", "", false},
	}
	for _, tt := range tests {
		got, ok := locationKey(req, []byte(tt.loc))
		if ok != tt.ok || got != tt.want {
			t.Errorf("RFC 9111 §4.4 same origin: locationKey(%q) = %q %v, want %q %v", tt.loc, got, ok, tt.want, tt.ok)
		}
	}
}

func TestVariant(t *testing.T) {
	key := func(cookies, vary []string, kv ...string) string {
		v, ok := appendVariant(nil, fields(kv...), cookies, vary)
		if !ok {
			return "!"
		}
		return string(v)
	}
	ae := []string{"accept-encoding"}
	tests := []struct {
		name, cite string
		a, b       string
		same       bool
	}{
		{"Accept-Encoding order and spacing", "RFC 9111 §4.1 (normalization)",
			key(nil, ae, "Accept-Encoding", "gzip, br"), key(nil, ae, "accept-encoding", "br,gzip"), true},
		{"Accept-Encoding q=0 refuses", "RFC 9110 §12.5.3",
			key(nil, ae, "Accept-Encoding", "gzip;q=0, br"), key(nil, ae, "Accept-Encoding", "br"), true},
		{"Accept-Encoding differs", "RFC 9111 §4.1",
			key(nil, ae, "Accept-Encoding", "gzip"), key(nil, ae, "Accept-Encoding", "br"), false},
		{"absent Accept-Encoding differs from identity only", "RFC 9110 §12.5.3",
			key(nil, ae), key(nil, ae, "Accept-Encoding", "identity"), false},
		{"other fields: same value", "RFC 9111 §4.1",
			key(nil, []string{"x-lang"}, "X-Lang", "de"), key(nil, []string{"x-lang"}, "x-lang", " de "), true},
		{"other fields: absent vs empty", "RFC 9111 §4.1",
			key(nil, []string{"x-lang"}), key(nil, []string{"x-lang"}, "X-Lang", ""), false},
		{"no value runs into the next", "berth key encoding",
			key(nil, []string{"a", "b"}, "a", "x", "b", "y"), key(nil, []string{"a", "b"}, "a", "xy"), false},
		{"named cookie: same value shares", "Passenger vary-by-cookie",
			key([]string{"uid"}, nil, "Cookie", "uid=7; _ga=1"), key([]string{"uid"}, nil, "Cookie", "_ga=2; uid=7"), true},
		{"named cookie: other value", "Passenger vary-by-cookie",
			key([]string{"uid"}, nil, "Cookie", "uid=7"), key([]string{"uid"}, nil, "Cookie", "uid=8"), false},
		{"named cookie: absent vs empty", "berth key encoding",
			key([]string{"uid"}, nil), key([]string{"uid"}, nil, "Cookie", "uid="), false},
		{"named cookie over two Cookie fields", "RFC 6265 §5.4",
			key([]string{"uid"}, nil, "Cookie", "a=1", "Cookie", "uid=7"), key([]string{"uid"}, nil, "Cookie", "uid=7"), true},
		{"named cookie twice with two values is not keyed", "berth rule",
			key([]string{"uid"}, nil, "Cookie", "uid=7; uid=8"), "!", true},
		{"cookie names are case-sensitive", "RFC 6265 §5.4",
			key([]string{"uid"}, nil, "Cookie", "UID=7"), key([]string{"uid"}, nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.a == tt.b) != tt.same {
				t.Errorf("%s: %q vs %q, same = %v", tt.cite, tt.a, tt.b, !tt.same)
			}
		})
	}
}
