package cache

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// recW is a fake front-door ResponseWriter: it keeps deep copies of what
// it is given.
type recW struct {
	heads []h1.Response
	body  []byte
}

func (w *recW) WriteHead(r *h1.Response) error {
	c := *r
	c.Header = nil
	for _, f := range r.Header {
		c.Header = append(c.Header, h1.Field{Name: []byte(string(f.Name)), Value: []byte(string(f.Value))})
	}
	w.heads = append(w.heads, c)
	return nil
}
func (w *recW) Write(p []byte) (int, error) { w.body = append(w.body, p...); return len(p), nil }
func (w *recW) Flush() error                { return nil }

func (w *recW) status() int {
	if len(w.heads) == 0 {
		return 0
	}
	return w.heads[len(w.heads)-1].Status
}

func (w *recW) get(name string) string {
	if len(w.heads) == 0 {
		return ""
	}
	return string(w.heads[len(w.heads)-1].Header.Get(name))
}

func (w *recW) all(name string) []string {
	var out []string
	for _, f := range w.heads[len(w.heads)-1].Header {
		if strings.EqualFold(string(f.Name), name) {
			out = append(out, string(f.Value))
		}
	}
	return out
}

// app is a fake rest of the chain. respond says what call n answers.
type app struct {
	calls   atomic.Int64
	gate    chan struct{} // if set, each call waits for it to close
	respond func(n int64, x *balancer.Exchange) (status int, fields []string, body string)
	mu      sync.Mutex
	seen    []h1.Fields // request fields of each call
	chunked bool        // answer without Content-Length
}

func (a *app) ServeExchange(x *balancer.Exchange) {
	n := a.calls.Add(1)
	a.mu.Lock()
	var fs h1.Fields
	for _, f := range x.Req.Header {
		fs = append(fs, h1.Field{Name: []byte(string(f.Name)), Value: []byte(string(f.Value))})
	}
	a.seen = append(a.seen, fs)
	a.mu.Unlock()
	if a.gate != nil {
		<-a.gate
	}
	st, kv, body := a.respond(n, x)
	cl := int64(len(body))
	if a.chunked {
		cl = -1
	}
	resp := &h1.Response{Minor: 1, Status: st, Header: fields(kv...), ContentLength: cl}
	x.W.WriteHead(resp)
	if string(x.Req.Method) != "HEAD" && len(body) > 0 {
		// Two writes, as a proxy copying in pieces would.
		x.W.Write([]byte(body[:len(body)/2]))
		x.W.Write([]byte(body[len(body)/2:]))
	}
}

func (a *app) lastSeen() h1.Fields {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[len(a.seen)-1]
}

func fixed(status int, body string, kv ...string) func(int64, *balancer.Exchange) (int, []string, string) {
	return func(int64, *balancer.Exchange) (int, []string, string) { return status, kv, body }
}

func newCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends one request through h.
func do(h balancer.Handler, method, target string, kv ...string) *recW {
	w := &recW{}
	req := &h1.Request{Method: []byte(method), Target: []byte(target), Minor: 1, KeepAlive: true}
	req.Header = fields(kv...)
	if !req.Header.Has("Host") {
		req.Header = append(fields("Host", "example.com"), req.Header...)
	}
	x := &balancer.Exchange{Req: req, Body: strings.NewReader(""), W: w}
	h.ServeExchange(x)
	if x.W != w {
		panic("the link left its writer in the exchange")
	}
	return w
}

func TestHitAndMiss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: fixed(200, "hello", "Cache-Control", "max-age=10", "Content-Type", "text/plain",
			"Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=5")}
		c := newCache(t, Config{})
		h := c.Wrap(a)

		w := do(h, "GET", "/a")
		if w.status() != 200 || string(w.body) != "hello" || w.get("Cache-Status") != "berth; fwd=miss; stored" {
			t.Fatalf("miss: %d %q %q", w.status(), w.body, w.get("Cache-Status"))
		}
		time.Sleep(3 * time.Second)
		w = do(h, "GET", "/a", "X-Forwarded-Host", "evil.example")
		if w.status() != 200 || string(w.body) != "hello" || w.get("Cache-Status") != "berth; hit" {
			t.Fatalf("hit: %d %q %q", w.status(), w.body, w.get("Cache-Status"))
		}
		if w.get("Age") != "3" {
			t.Errorf("Age = %q, want 3 (RFC 9111 §5.1)", w.get("Age"))
		}
		if w.get("Content-Type") != "text/plain" || w.get("Date") == "" {
			t.Errorf("stored fields lost: %v", w.heads[0].Header)
		}
		for _, n := range []string{"Connection", "X-Hop", "Keep-Alive"} {
			if w.get(n) != "" {
				t.Errorf("hop-by-hop %s stored (RFC 9110 §7.6.1)", n)
			}
		}
		if w.heads[0].ContentLength != 5 {
			t.Errorf("ContentLength = %d", w.heads[0].ContentLength)
		}
		if n := a.calls.Load(); n != 1 {
			t.Errorf("app called %d times, want 1", n)
		}
		// Another host, another scheme, another query: other resources.
		do(h, "GET", "/a?x=1")
		w = do(h, "GET", "/a", "Host", "other.example")
		if n := a.calls.Load(); n != 3 {
			t.Errorf("app called %d times, want 3", n)
		}
		s := c.Stats()
		if s.Hits != 1 || s.Misses != 3 || s.Entries != 3 || s.Bytes <= 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestHostHeaderIsTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			return 200, []string{"Cache-Control", "max-age=60"}, string(x.Req.Host())
		}}
		h := newCache(t, Config{}).Wrap(a)
		w := &recW{}
		req := &h1.Request{Method: []byte("GET"), Target: []byte("/"), Header: fields("Host", "A.example:80")}
		h.ServeExchange(&balancer.Exchange{Req: req, W: w})
		w2 := do(h, "GET", "/", "Host", "a.example", "Host", "b.example")
		w3 := &recW{}
		req = &h1.Request{Method: []byte("GET"), Target: []byte("/"), Header: fields("Host", "a.example")}
		h.ServeExchange(&balancer.Exchange{Req: req, W: w3})
		if w3.get("Cache-Status") != "berth; hit" || string(w3.body) != "A.example:80" {
			t.Errorf("same origin not shared: %q %q", w3.get("Cache-Status"), w3.body)
		}
		if w2.get("Cache-Status") != "berth; fwd=bypass" {
			t.Errorf("two Host fields: %q, want bypass (RFC 9112 §3.2)", w2.get("Cache-Status"))
		}
	})
}

func TestExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			return 200, []string{"Cache-Control", "max-age=10"}, fmt.Sprint("v", n)
		}}
		h := newCache(t, Config{}).Wrap(a)
		do(h, "GET", "/")
		time.Sleep(9 * time.Second)
		if w := do(h, "GET", "/"); string(w.body) != "v1" {
			t.Fatalf("fresh: %q", w.body)
		}
		time.Sleep(2 * time.Second)
		w := do(h, "GET", "/")
		if string(w.body) != "v2" || w.get("Cache-Status") != "berth; fwd=stale; stored" {
			t.Fatalf("stale: %q %q", w.body, w.get("Cache-Status"))
		}
		if w := do(h, "GET", "/"); string(w.body) != "v2" || w.get("Cache-Status") != "berth; hit" {
			t.Fatalf("after refresh: %q %q", w.body, w.get("Cache-Status"))
		}
	})
}

func TestNotStored(t *testing.T) {
	tests := []struct {
		name string
		req  []string
		resp []string
	}{
		{"no freshness", nil, []string{"Content-Type", "text/plain"}},
		{"private", nil, []string{"Cache-Control", "private, max-age=60"}},
		{"no-store", nil, []string{"Cache-Control", "no-store, max-age=60"}},
		{"Set-Cookie", nil, []string{"Cache-Control", "public, max-age=60", "Set-Cookie", "sid=1"}},
		{"Vary *", nil, []string{"Cache-Control", "max-age=60", "Vary", "*"}},
		{"Authorization", []string{"Authorization", "Basic YTpi"}, []string{"Cache-Control", "max-age=60"}},
		{"request no-store", []string{"Cache-Control", "no-store"}, []string{"Cache-Control", "max-age=60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := &app{respond: fixed(200, "x", tt.resp...)}
				c := newCache(t, Config{})
				h := c.Wrap(a)
				for i := 0; i < 3; i++ {
					w := do(h, "GET", "/", tt.req...)
					if cs := w.get("Cache-Status"); cs != "berth; fwd=miss" {
						t.Fatalf("request %d: Cache-Status %q", i, cs)
					}
				}
				if n := a.calls.Load(); n != 3 {
					t.Errorf("app called %d times, want 3", n)
				}
				if s := c.Stats(); s.Entries != 0 {
					t.Errorf("%d entries stored", s.Entries)
				}
			})
		})
	}
}

func TestAuthorizationPublic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: fixed(200, "shared", "Cache-Control", "public, max-age=60")}
		h := newCache(t, Config{}).Wrap(a)
		do(h, "GET", "/", "Authorization", "Bearer x")
		if w := do(h, "GET", "/"); w.get("Cache-Status") != "berth; hit" {
			t.Errorf("RFC 9111 §3.5: public response to Authorization not reused: %q", w.get("Cache-Status"))
		}
	})
}

func TestSetCookieNeverCrosses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			return 200, []string{"Cache-Control", "public, max-age=60", "Set-Cookie", fmt.Sprint("sid=", n)}, fmt.Sprint(n)
		}}
		h := newCache(t, Config{}).Wrap(a)
		for i := 1; i <= 8; i++ {
			w := do(h, "GET", "/", "Cookie", fmt.Sprint("sid=client", i))
			if got, want := w.get("Set-Cookie"), "sid="+string(w.body); got != want {
				t.Fatalf("client %d got Set-Cookie %q with body %q", i, got, w.body)
			}
			if string(w.body) != strconv.Itoa(i) {
				t.Fatalf("client %d got call %q", i, w.body)
			}
		}
	})
}

func TestVary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			enc := "identity"
			if x.Req.Header.HasToken("Accept-Encoding", "br") {
				enc = "br"
			} else if x.Req.Header.HasToken("Accept-Encoding", "gzip") {
				enc = "gzip"
			}
			return 200, []string{"Cache-Control", "max-age=60", "Vary", "Accept-Encoding, X-Lang", "Content-Encoding", enc},
				enc + "/" + string(x.Req.Header.Get("X-Lang"))
		}}
		h := newCache(t, Config{}).Wrap(a)
		reqs := []struct {
			fields []string
			want   string
			calls  int64
		}{
			{[]string{"Accept-Encoding", "gzip, br"}, "br/", 1},
			{[]string{"Accept-Encoding", "br,gzip"}, "br/", 1},
			{[]string{"Accept-Encoding", "gzip"}, "gzip/", 2},
			{nil, "identity/", 3},
			{[]string{"Accept-Encoding", "gzip", "X-Lang", "de"}, "gzip/de", 4},
			{[]string{"Accept-Encoding", "gzip;q=1.0", "X-Lang", "de"}, "gzip/de", 4},
			{[]string{"Accept-Encoding", "gzip"}, "gzip/", 4},
			{nil, "identity/", 4},
		}
		for i, r := range reqs {
			w := do(h, "GET", "/", r.fields...)
			if string(w.body) != r.want || a.calls.Load() != r.calls {
				t.Errorf("request %d %v: %q after %d calls, want %q after %d", i, r.fields, w.body, a.calls.Load(), r.want, r.calls)
			}
		}
	})
}

func TestVaryCookie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			v, _, _ := cookieValue(x.Req.Header, "uid")
			return 200, []string{"Cache-Control", "max-age=60"}, "page for " + string(v)
		}}
		h := newCache(t, Config{VaryCookies: []string{"uid"}}).Wrap(a)
		reqs := []struct {
			cookie, want string
			calls        int64
		}{
			{"", "page for ", 1},
			{"_ga=GA1.2.3", "page for ", 1}, // other cookies are not part of the key
			{"uid=alice; _ga=9", "page for alice", 2},
			{"_ga=1; uid=alice", "page for alice", 2},
			{"uid=bob", "page for bob", 3},
			{"uid=alice", "page for alice", 3},
			{"uid=", "page for ", 4}, // empty is not absent
		}
		for i, r := range reqs {
			var kv []string
			if r.cookie != "" {
				kv = []string{"Cookie", r.cookie}
			}
			w := do(h, "GET", "/", kv...)
			if string(w.body) != r.want || a.calls.Load() != r.calls {
				t.Errorf("request %d (%s): %q after %d calls, want %q after %d", i, r.cookie, w.body, a.calls.Load(), r.want, r.calls)
			}
		}
		// A request naming the cookie twice with two values is not keyed.
		if w := do(h, "GET", "/", "Cookie", "uid=alice; uid=bob"); w.get("Cache-Status") != "berth; fwd=bypass" {
			t.Errorf("ambiguous cookie: %q", w.get("Cache-Status"))
		}
	})
}

func TestVaryCookieConfig(t *testing.T) {
	for _, bad := range []string{"", "a b", "a=b", "a;"} {
		if _, err := New(Config{VaryCookies: []string{bad}}); err == nil {
			t.Errorf("cookie name %q accepted", bad)
		}
	}
	if _, err := New(Config{MaxBytes: 1 << 20, MaxEntry: 2 << 20}); err == nil {
		t.Error("entry larger than the cache accepted")
	}
}

func TestCoalescing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{gate: make(chan struct{}), respond: fixed(200, "shared", "Cache-Control", "max-age=60")}
		h := newCache(t, Config{}).Wrap(a)
		ws := make([]*recW, 50)
		var wg sync.WaitGroup
		for i := range ws {
			wg.Go(func() { ws[i] = do(h, "GET", "/") })
		}
		synctest.Wait() // all 50 are blocked: one in the app, 49 on its flight
		close(a.gate)
		wg.Wait()
		if n := a.calls.Load(); n != 1 {
			t.Fatalf("50 concurrent misses made %d app requests, want 1", n)
		}
		collapsed := 0
		for _, w := range ws {
			if string(w.body) != "shared" {
				t.Fatalf("body %q", w.body)
			}
			if w.get("Cache-Status") == "berth; fwd=miss; collapsed" {
				collapsed++
			}
		}
		if collapsed != 49 {
			t.Errorf("%d collapsed, want 49", collapsed)
		}
	})
}

func TestCoalescingSetCookie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{gate: make(chan struct{}), respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			return 200, []string{"Cache-Control", "public, max-age=60", "Set-Cookie", fmt.Sprint("sid=", n)}, fmt.Sprint(n)
		}}
		h := newCache(t, Config{}).Wrap(a)
		ws := make([]*recW, 50)
		var wg sync.WaitGroup
		for i := range ws {
			wg.Go(func() { ws[i] = do(h, "GET", "/") })
		}
		synctest.Wait()
		close(a.gate)
		wg.Wait()
		if n := a.calls.Load(); n != 50 {
			t.Fatalf("%d app requests, want 50", n)
		}
		seen := map[string]bool{}
		for _, w := range ws {
			sc := w.all("Set-Cookie")
			if len(sc) != 1 || sc[0] != "sid="+string(w.body) {
				t.Fatalf("client got Set-Cookie %q with body %q", sc, w.body)
			}
			if seen[sc[0]] {
				t.Fatalf("%s went to two clients", sc[0])
			}
			seen[sc[0]] = true
		}
	})
}

func TestCoalescingVaryMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{gate: make(chan struct{}), respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			return 200, []string{"Cache-Control", "max-age=60", "Vary", "X-Lang"}, string(x.Req.Header.Get("X-Lang"))
		}}
		h := newCache(t, Config{}).Wrap(a)
		langs := []string{"de", "fr", "de", "fr", "en"}
		ws := make([]*recW, len(langs))
		var wg sync.WaitGroup
		for i, l := range langs {
			wg.Go(func() { ws[i] = do(h, "GET", "/", "X-Lang", l) })
		}
		synctest.Wait()
		close(a.gate)
		wg.Wait()
		for i, w := range ws {
			if string(w.body) != langs[i] {
				t.Errorf("X-Lang %s got %q", langs[i], w.body)
			}
		}
		if n := a.calls.Load(); n > 4 || n < 3 {
			t.Errorf("%d app requests for 3 variants", n)
		}
	})
}

func TestCoalescingRevalidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gate chan struct{}
		a := &app{respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			if gate != nil {
				<-gate
			}
			if x.Req.Header.Get("If-None-Match") != nil {
				return 304, []string{"Cache-Control", "max-age=0", "ETag", `"e"`}, ""
			}
			return 200, []string{"Cache-Control", "max-age=0", "ETag", `"e"`}, "page"
		}}
		h := newCache(t, Config{}).Wrap(a)
		do(h, "GET", "/")
		time.Sleep(time.Second)
		gate = make(chan struct{})
		ws := make([]*recW, 20)
		var wg sync.WaitGroup
		for i := range ws {
			wg.Go(func() { ws[i] = do(h, "GET", "/") })
		}
		synctest.Wait()
		close(gate)
		wg.Wait()
		for _, w := range ws {
			if string(w.body) != "page" {
				t.Fatalf("%d %q", w.status(), w.body)
			}
		}
		if n := a.calls.Load(); n != 2 {
			t.Errorf("20 concurrent requests for a max-age=0 entry made %d revalidations, want 1", n-1)
		}
		// A later request revalidates again.
		gate = nil
		do(h, "GET", "/")
		if n := a.calls.Load(); n != 3 {
			t.Errorf("%d app requests, want 3", n)
		}
	})
}

func TestCoalescingBoundedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			if n == 1 {
				<-release // the first request hangs
			}
			return 200, []string{"Cache-Control", "max-age=60"}, fmt.Sprint(n)
		}}
		h := newCache(t, Config{CoalesceWait: 2 * time.Second}).Wrap(a)
		go do(h, "GET", "/")
		synctest.Wait()
		start := time.Now()
		w := do(h, "GET", "/")
		if d := time.Since(start); d != 2*time.Second || string(w.body) != "2" {
			t.Errorf("waited %v and got %q, want 2s and the second call", d, w.body)
		}
		close(release)
	})
}

func TestStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := false
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			if down {
				return 503, []string{"Content-Type", "text/plain"}, "no worker"
			}
			return 200, []string{"Cache-Control", "max-age=1, stale-if-error=120"}, "page"
		}}
		h := newCache(t, Config{StaleOnOutage: 10 * time.Second}).Wrap(a)
		do(h, "GET", "/")
		down = true
		time.Sleep(100 * time.Second)
		w := do(h, "GET", "/")
		if w.status() != 200 || string(w.body) != "page" || w.get("Cache-Status") != "berth; fwd=stale; fwd-status=503; ttl=-99" {
			t.Fatalf("within stale-if-error: %d %q %q", w.status(), w.body, w.get("Cache-Status"))
		}
		if len(w.heads) != 1 {
			t.Errorf("%d heads written", len(w.heads))
		}
		time.Sleep(25 * time.Second)
		w = do(h, "GET", "/")
		if w.status() != 503 || string(w.body) != "no worker" {
			t.Fatalf("past stale-if-error: %d %q", w.status(), w.body)
		}
	})
}

func TestCoalescingOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gate chan struct{}
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			if n == 1 {
				return 200, []string{"Cache-Control", "max-age=1", "ETag", `"e"`}, "page"
			}
			<-gate
			return 503, nil, "no worker"
		}}
		h := newCache(t, Config{}).Wrap(a)
		do(h, "GET", "/")
		time.Sleep(10 * time.Second)
		gate = make(chan struct{})
		ws := make([]*recW, 20)
		var wg sync.WaitGroup
		for i := range ws {
			wg.Go(func() { ws[i] = do(h, "GET", "/") })
		}
		synctest.Wait()
		close(gate)
		wg.Wait()
		for _, w := range ws {
			if w.status() != 200 || string(w.body) != "page" {
				t.Fatalf("%d %q", w.status(), w.body)
			}
		}
		if n := a.calls.Load(); n != 2 {
			t.Errorf("%d app requests during the outage, want 1", n-1)
		}
	})
}

func TestStaleOnOutage(t *testing.T) {
	for _, tt := range []struct {
		name, cc string
		status   int
		stale    bool
	}{
		{"outage grace", "max-age=1", 503, true},
		{"502 too", "max-age=1", 502, true},
		{"an app's 500 is no outage", "max-age=1", 500, false},
		{"must-revalidate", "max-age=1, must-revalidate", 503, false},
		{"s-maxage", "s-maxage=1", 503, false},
		{"no-cache", "no-cache", 503, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				down := false
				a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
					if down {
						return tt.status, nil, "down"
					}
					return 200, []string{"Cache-Control", tt.cc, "ETag", `"e"`}, "page"
				}}
				h := newCache(t, Config{}).Wrap(a)
				do(h, "GET", "/")
				down = true
				time.Sleep(30 * time.Second)
				w := do(h, "GET", "/")
				if got := string(w.body) == "page"; got != tt.stale {
					t.Errorf("stale served = %v (%d %q), want %v", got, w.status(), w.get("Cache-Status"), tt.stale)
				}
				if tt.stale {
					time.Sleep(40 * time.Second) // past the one-minute grace
					if w := do(h, "GET", "/"); w.status() != tt.status {
						t.Errorf("past the grace: %d", w.status())
					}
				}
			})
		})
	}
}

func TestUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := false
		a := &app{respond: fixed(200, "page", "Cache-Control", "max-age=1")}
		h := newCache(t, Config{Unavailable: func() bool { return down }}).Wrap(a)
		do(h, "GET", "/")
		down = true
		time.Sleep(1500 * time.Millisecond) // stale by half a second: ttl rounds down to -1
		w := do(h, "GET", "/")
		if string(w.body) != "page" || w.get("Cache-Status") != "berth; hit; ttl=-1" || a.calls.Load() != 1 {
			t.Errorf("%q %q after %d calls", w.body, w.get("Cache-Status"), a.calls.Load())
		}
	})
}

func TestConditionalHit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := "Sat, 28 Nov 2026 09:00:00 GMT"
		a := &app{respond: fixed(200, "body", "Cache-Control", "max-age=60", "ETag", `"v1"`, "Last-Modified", lm, "Content-Type", "text/plain")}
		h := newCache(t, Config{}).Wrap(a)
		do(h, "GET", "/")
		for _, tt := range []struct {
			kv     []string
			status int
		}{
			{[]string{"If-None-Match", `"v1"`}, 304},
			{[]string{"If-None-Match", `W/"v1"`}, 304},
			{[]string{"If-None-Match", `"v0"`}, 200},
			{[]string{"If-Modified-Since", lm}, 304},
			{[]string{"If-Modified-Since", "Sat, 28 Nov 2026 08:00:00 GMT"}, 200},
			{[]string{"If-None-Match", `"v0"`, "If-Modified-Since", lm}, 200}, // If-None-Match wins
		} {
			w := do(h, "GET", "/", tt.kv...)
			if w.status() != tt.status {
				t.Errorf("RFC 9110 §13.2.2 %v: %d, want %d", tt.kv, w.status(), tt.status)
			}
			if tt.status == 304 {
				if len(w.body) != 0 || w.get("ETag") != `"v1"` || w.get("Content-Type") != "" || w.get("Cache-Status") != "berth; hit" {
					t.Errorf("304: body %q, fields %v", w.body, w.heads[0].Header)
				}
			}
		}
		if n := a.calls.Load(); n != 1 {
			t.Errorf("%d app requests", n)
		}
	})
}

func TestHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: fixed(200, "12345", "Cache-Control", "max-age=60")}
		h := newCache(t, Config{}).Wrap(a)
		if w := do(h, "HEAD", "/"); w.get("Cache-Status") != "berth; fwd=miss" {
			t.Errorf("HEAD miss: %q", w.get("Cache-Status"))
		}
		do(h, "GET", "/")
		w := do(h, "HEAD", "/")
		if w.get("Cache-Status") != "berth; hit" || len(w.body) != 0 || w.heads[0].ContentLength != 5 {
			t.Errorf("HEAD from GET entry: %q body %q length %d", w.get("Cache-Status"), w.body, w.heads[0].ContentLength)
		}
		if n := a.calls.Load(); n != 2 {
			t.Errorf("%d app requests", n)
		}
	})
}

func TestInvalidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		post := fixed(200, "ok")
		a := &app{}
		a.respond = func(n int64, x *balancer.Exchange) (int, []string, string) {
			if string(x.Req.Method) != "GET" {
				return post(n, x)
			}
			return 200, []string{"Cache-Control", "max-age=60"}, "page"
		}
		c := newCache(t, Config{})
		h := c.Wrap(a)
		hit := func(target string) bool { return do(h, "GET", target).get("Cache-Status") == "berth; hit" }
		for _, p := range []string{"/a", "/b", "/c", "/d"} {
			do(h, "GET", p)
		}
		w := do(h, "POST", "/a")
		if w.get("Cache-Status") != "berth; fwd=bypass" {
			t.Errorf("POST: %q", w.get("Cache-Status"))
		}
		if hit("/a") {
			t.Error("RFC 9111 §4.4: /a still cached after a POST to it")
		}
		post = fixed(303, "", "Location", "http://example.com/b", "Content-Location", "/c")
		do(h, "PUT", "/x")
		if hit("/b") || hit("/c") {
			t.Error("RFC 9111 §4.4: Location / Content-Location not invalidated")
		}
		post = fixed(500, "")
		do(h, "DELETE", "/d")
		if !hit("/d") {
			t.Error("RFC 9111 §4.4: a failed DELETE invalidated")
		}
		post = fixed(200, "", "Location", "http://other.example/d")
		do(h, "POST", "/x")
		if !hit("/d") {
			t.Error("another origin's Location invalidated ours")
		}
	})
}

func TestPurge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: fixed(200, "x", "Cache-Control", "max-age=60", "Vary", "X-V")}
		c := newCache(t, Config{})
		h := c.Wrap(a)
		do(h, "GET", "/a/1")
		do(h, "GET", "/a/1", "X-V", "2")
		do(h, "GET", "/a/2?q")
		do(h, "GET", "/b")
		w := &recW{}
		c.Wrap(a).ServeExchange(&balancer.Exchange{Req: &h1.Request{Method: []byte("GET"), Target: []byte("/a/3"), Header: fields("Host", "other.example")}, W: w})
		if n := c.Purge("EXAMPLE.com", "/a"); n != 3 {
			t.Errorf("purged %d, want 3", n)
		}
		if s := c.Stats(); s.Entries != 2 {
			t.Errorf("%d entries left", s.Entries)
		}
		if n := c.Purge("", ""); n != 2 {
			t.Errorf("purged %d, want 2", n)
		}
		if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 {
			t.Errorf("after purging all: %+v", s)
		}
	})
}

func TestEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := strings.Repeat("x", 4000)
		a := &app{respond: fixed(200, body, "Cache-Control", "max-age=600")}
		c := newCache(t, Config{MaxBytes: 64 << 10, MaxEntry: 8 << 10})
		h := c.Wrap(a)
		do(h, "GET", "/hot")
		for i := 0; i < 200; i++ {
			do(h, "GET", fmt.Sprint("/cold/", i))
			if w := do(h, "GET", "/hot"); i > 0 && w.get("Cache-Status") != "berth; hit" {
				t.Fatalf("hot entry evicted after %d cold ones", i)
			}
			if s := c.Stats(); s.Bytes > 64<<10 {
				t.Fatalf("%d bytes over a 64 KiB budget", s.Bytes)
			}
		}
		s := c.Stats()
		if s.Entries < 10 || s.Entries > 16 {
			t.Errorf("%d entries of ~4 KiB in 64 KiB", s.Entries)
		}
	})
}

func TestLargeBodyStreamsThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := strings.Repeat("y", 3000)
		a := &app{respond: fixed(200, body, "Cache-Control", "max-age=60")}
		c := newCache(t, Config{MaxBytes: 1 << 20, MaxEntry: 1000})
		h := c.Wrap(a)
		for i := 0; i < 2; i++ {
			w := do(h, "GET", "/big")
			if string(w.body) != body || w.get("Cache-Status") != "berth; fwd=miss" {
				t.Fatalf("%d bytes, %q", len(w.body), w.get("Cache-Status"))
			}
		}
		if s := c.Stats(); s.Entries != 0 {
			t.Errorf("%d entries", s.Entries)
		}
		// Unknown length that turns out too long.
		a.chunked = true
		do(h, "GET", "/big2")
		if s := c.Stats(); s.Entries != 0 {
			t.Errorf("%d entries", s.Entries)
		}
	})
}

// completer is a link below the cache that says when a chunked body ended,
// as the proxy can.
type completer struct{ next balancer.Handler }

func (l completer) ServeExchange(x *balancer.Exchange) {
	l.next.ServeExchange(x)
	if bc, ok := x.W.(interface{ BodyComplete() }); ok {
		bc.BodyComplete()
	}
}

func TestChunked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{chunked: true, respond: fixed(200, "chunks", "Cache-Control", "max-age=60")}
		c := newCache(t, Config{})
		do(c.Wrap(a), "GET", "/")
		if s := c.Stats(); s.Entries != 0 {
			t.Error("a chunked body of unknown completeness was stored")
		}
		h := c.Wrap(completer{a})
		do(h, "GET", "/")
		if w := do(h, "GET", "/"); string(w.body) != "chunks" || w.get("Cache-Status") != "berth; hit" {
			t.Errorf("complete chunked body: %q %q", w.body, w.get("Cache-Status"))
		}
	})
}

func TestTruncatedBodyNotStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, Config{})
		h := c.Wrap(balancer.HandlerFunc(func(x *balancer.Exchange) {
			x.W.WriteHead(&h1.Response{Status: 200, Header: fields("Cache-Control", "max-age=60"), ContentLength: 10})
			x.W.Write([]byte("12345")) // the worker died here
		}))
		do(h, "GET", "/")
		if s := c.Stats(); s.Entries != 0 {
			t.Error("truncated body stored")
		}
	})
}

func TestRevalidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{}
		a.respond = func(n int64, x *balancer.Exchange) (int, []string, string) {
			if x.Req.Header.Get("If-None-Match") != nil {
				kv := []string{"Cache-Control", "max-age=30", "ETag", `"e"`}
				if n == 3 {
					kv = append(kv, "Set-Cookie", "sid=3")
				}
				return 304, kv, ""
			}
			return 200, []string{"Cache-Control", "max-age=1", "ETag", `"e"`, "Content-Type", "text/html"}, "page"
		}
		c := newCache(t, Config{})
		h := c.Wrap(a)
		do(h, "GET", "/")
		time.Sleep(2 * time.Second)
		w := do(h, "GET", "/")
		if string(a.lastSeen().Get("If-None-Match")) != `"e"` {
			t.Fatalf("RFC 9111 §4.3.1: no validator sent: %v", a.lastSeen())
		}
		if w.status() != 200 || string(w.body) != "page" || w.get("Cache-Status") != "berth; fwd=stale; stored; fwd-status=304" ||
			w.get("Content-Type") != "text/html" || w.get("Cache-Control") != "max-age=30" {
			t.Fatalf("revalidated: %d %q %v", w.status(), w.body, w.heads[0].Header)
		}
		time.Sleep(20 * time.Second)
		if w := do(h, "GET", "/"); w.get("Cache-Status") != "berth; hit" {
			t.Fatalf("after revalidation: %q", w.get("Cache-Status"))
		}
		// A 304 with a cookie: that client gets it, the store does not.
		time.Sleep(20 * time.Second)
		w = do(h, "GET", "/")
		if sc := w.all("Set-Cookie"); len(sc) != 1 || sc[0] != "sid=3" || string(w.body) != "page" || w.get("Cache-Status") != "berth; fwd=stale; fwd-status=304" {
			t.Fatalf("304 with cookie: Set-Cookie %q, %q %q", sc, w.body, w.get("Cache-Status"))
		}
		w = do(h, "GET", "/")
		if w.get("Set-Cookie") != "" {
			t.Fatalf("another client got the cookie of a 304: %q", w.get("Set-Cookie"))
		}
	})
}

func TestNoCacheRevalidatesEveryTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{}
		a.respond = func(n int64, x *balancer.Exchange) (int, []string, string) {
			if x.Req.Header.Get("If-None-Match") != nil {
				return 304, []string{"Cache-Control", "no-cache", "ETag", `"e"`}, ""
			}
			return 200, []string{"Cache-Control", "no-cache", "ETag", `"e"`}, "page"
		}
		h := newCache(t, Config{}).Wrap(a)
		for i := 0; i < 3; i++ {
			if w := do(h, "GET", "/"); string(w.body) != "page" {
				t.Fatalf("%q", w.body)
			}
		}
		if n := a.calls.Load(); n != 3 {
			t.Errorf("RFC 9111 §5.2.2.4: %d app requests, want 3", n)
		}
	})
}

func TestBypass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: fixed(200, "x", "Cache-Control", "max-age=60")}
		c := newCache(t, Config{})
		h := c.Wrap(a)
		for _, tt := range []struct {
			method, target string
			kv             []string
		}{
			{"POST", "/", nil},
			{"GET", "http://example.com/", nil},
			{"GET", "/", []string{"If-Match", `"x"`}},
			{"OPTIONS", "*", nil},
		} {
			if w := do(h, tt.method, tt.target, tt.kv...); w.get("Cache-Status") != "berth; fwd=bypass" {
				t.Errorf("%s %s %v: %q", tt.method, tt.target, tt.kv, w.get("Cache-Status"))
			}
		}
		w := &recW{}
		req := &h1.Request{Method: []byte("GET"), Target: []byte("/"), Header: fields("Host", "example.com", "Connection", "upgrade", "Upgrade", "websocket"), Upgrade: true}
		h.ServeExchange(&balancer.Exchange{Req: req, W: w})
		if w.get("Cache-Status") != "berth; fwd=bypass" {
			t.Errorf("upgrade: %q", w.get("Cache-Status"))
		}
		if s := c.Stats(); s.Bypass != 5 || s.Entries != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

var _ io.Reader = strings.NewReader("")

func TestLogsWhyNotStored(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := &app{respond: fixed(200, "x", "Cache-Control", "public, max-age=60", "Set-Cookie", "sid=1")}
	h := newCache(t, Config{Log: log}).Wrap(a)
	do(h, "GET", "/login?next=/")
	if got := buf.String(); !strings.Contains(got, `msg="response not stored" path=/login status=200 reason=set-cookie`) {
		t.Errorf("log: %q", got)
	}
	buf.Reset()
	a.respond = fixed(200, "x") // no freshness: the app did not ask, nothing to say
	do(h, "GET", "/other")
	if buf.Len() != 0 {
		t.Errorf("log: %q", buf.String())
	}
}

// TestUncacheableKeyIsNotSerialized: once a key's response turned out not
// storable, concurrent requests for it go to the app together instead of
// queueing behind one another's flight (a hot URL that is never cacheable
// would otherwise be served one request at a time), for passTTL.
func TestUncacheableKeyIsNotSerialized(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: fixed(200, "private page", "Cache-Control", "private")}
		h := newCache(t, Config{}).Wrap(a)
		do(h, "GET", "/") // learns that / is not storable
		a.gate = make(chan struct{})
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() { do(h, "GET", "/") })
		}
		synctest.Wait() // all 10 are blocked: in the app, or on a flight
		if n := a.calls.Load(); n != 11 {
			t.Errorf("%d of 10 concurrent requests reached the app at once, want 10", n-1)
		}
		close(a.gate)
		wg.Wait()

		// After passTTL the key coalesces again (it may have become
		// cacheable).
		time.Sleep(passTTL)
		a.gate = make(chan struct{})
		before := a.calls.Load()
		for range 5 {
			wg.Go(func() { do(h, "GET", "/") })
		}
		synctest.Wait()
		if n := a.calls.Load() - before; n != 1 {
			t.Errorf("after passTTL, %d concurrent requests reached the app, want 1 (coalesced)", n)
		}
		close(a.gate)
		wg.Wait()
	})
}
