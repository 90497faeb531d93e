package cache

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"berth/balancer"
	"berth/packaging/testenv"
)

// swrApp answers v1, v2, … with max-age=1, stale-while-revalidate=30;
// every call after the first waits for gate (set before the refresh).
func swrApp(extra ...string) *app {
	return &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
		return 200, append([]string{"Cache-Control", "max-age=1, stale-while-revalidate=30"}, extra...), fmt.Sprint("v", n)
	}}
}

// gated returns an app whose calls after the first block until release is
// called (RFC 5861 tests: a slow app).
func gated(a *app) (release func()) {
	gate := make(chan struct{})
	inner := a.respond
	a.respond = func(n int64, x *balancer.Exchange) (int, []string, string) {
		if n > 1 {
			<-gate
		}
		return inner(n, x)
	}
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

// TestStaleWhileRevalidateInBackground: within stale-while-revalidate
// (RFC 5861 §3) every request gets the stale entry at once, though the app
// is slow; N concurrent stale hits make exactly one app request, in the
// background; once it lands the entry is fresh.
func TestStaleWhileRevalidateInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := swrApp()
		release := gated(a)
		c := newCache(t, Config{})
		defer c.Close()
		defer release() // before Close, should the test fail
		h := c.Wrap(a)
		do(h, "GET", "/")
		time.Sleep(5 * time.Second)

		const n = 20
		ws := make([]*recW, n)
		var answered atomic.Int32
		for i := range ws {
			go func() { ws[i] = do(h, "GET", "/"); answered.Add(1) }()
		}
		synctest.Wait() // everything that can run has: the app still holds the refresh
		if got := answered.Load(); got != n {
			t.Fatalf("%d of %d stale hits answered while the app was slow; want all at once", got, n)
		}
		started := 0
		for i, w := range ws {
			cs := w.get("Cache-Status")
			if cs == "berth; fwd=stale; ttl=-4" {
				started++
			} else if cs != "berth; hit; ttl=-4" {
				t.Errorf("stale hit %d: Cache-Status %q", i, cs)
			}
			if string(w.body) != "v1" || w.get("Age") != "5" {
				t.Errorf("stale hit %d: %q, Age %q", i, w.body, w.get("Age"))
			}
		}
		if started != 1 {
			t.Errorf("%d answers say fwd=stale, want 1 (the request that started the refresh)", started)
		}
		if got := a.calls.Load(); got != 2 {
			t.Errorf("%d app requests, want 2 (the miss and one refresh)", got)
		}
		release()
		synctest.Wait()
		if w := do(h, "GET", "/"); string(w.body) != "v2" || w.get("Cache-Status") != "berth; hit" {
			t.Errorf("after the refresh: %q %q, want the fresh v2", w.body, w.get("Cache-Status"))
		}
		s := c.Stats()
		if s.Stale != n || s.Misses != 1 || s.Refreshes != 1 || s.Hits != 1 {
			t.Errorf("stats %+v, want %d stale, 1 miss, 1 refresh, 1 hit", s, n)
		}
		if got := a.calls.Load(); got != 2 {
			t.Errorf("%d app requests in all, want 2", got)
		}
	})
}

// TestRefreshRequestCarriesOnlyTheKey: the background request is built
// from what the entry was keyed on — Host, target, the Vary'd fields and
// the configured cookie — never from the client's Authorization, other
// cookies or other fields; its response is stored under the same variant.
func TestRefreshRequestCarriesOnlyTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			return 200, []string{"Cache-Control", "public, max-age=1, stale-while-revalidate=30",
				"Vary", "Accept-Language, accept-encoding", "ETag", fmt.Sprintf(`"e%d"`, n)}, fmt.Sprint("v", n)
		}}
		c := newCache(t, Config{VaryCookies: []string{"sid"}})
		defer c.Close()
		h := c.Wrap(a)
		do(h, "GET", "/p?q=1", "Host", "Example.com", "Accept-Language", "fr", "Accept-Encoding", "gzip, br",
			"Cookie", "sid=abc; theme=dark", "Authorization", "Bearer first")
		time.Sleep(3 * time.Second)
		w := do(h, "HEAD", "/p?q=1", "Host", "example.com:80", "Accept-Language", "fr", "Accept-Encoding", "br;q=1, gzip",
			"Cookie", "track=1; sid=abc", "Cookie", "other=secret", "Authorization", "Bearer second",
			"X-Private", "yes", "User-Agent", "client/2")
		if w.get("Cache-Status") != "berth; fwd=stale; ttl=-2" || len(w.body) != 0 {
			t.Fatalf("stale HEAD: %q %q", w.get("Cache-Status"), w.body)
		}
		synctest.Wait()
		if got := a.calls.Load(); got != 2 {
			t.Fatalf("%d app requests, want 2", got)
		}
		var got []string
		for _, f := range a.lastSeen() {
			got = append(got, string(f.Name)+": "+string(f.Value))
		}
		want := []string{"Host: example.com:80", "Accept-Language: fr", "Accept-Encoding: br;q=1, gzip", "Cookie: sid=abc", `If-None-Match: "e1"`}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("the refresh request carried\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		w = do(h, "GET", "/p?q=1", "Host", "example.com", "Accept-Language", "fr", "Accept-Encoding", "gzip,br", "Cookie", "sid=abc")
		if string(w.body) != "v2" || w.get("Cache-Status") != "berth; hit" {
			t.Errorf("the refreshed variant: %q %q", w.body, w.get("Cache-Status"))
		}
	})
}

// TestRefreshOfCredentialVaryIsTheClients: an entry that varies on Cookie
// is keyed on a client's whole Cookie field; the cache does not copy
// credentials into a request of its own, so the client's own request
// refreshes it (in the foreground), carrying only its own cookie.
func TestRefreshOfCredentialVaryIsTheClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := swrApp("Vary", "Cookie")
		c := newCache(t, Config{})
		defer c.Close()
		h := c.Wrap(a)
		do(h, "GET", "/", "Cookie", "sid=1")
		time.Sleep(3 * time.Second)
		w := do(h, "GET", "/", "Cookie", "sid=1")
		if string(w.body) != "v2" || w.get("Cache-Status") != "berth; fwd=stale; stored" {
			t.Errorf("stale Vary: Cookie entry: %q %q, want a foreground refresh", w.body, w.get("Cache-Status"))
		}
		if v := a.lastSeen().Get("Cookie"); string(v) != "sid=1" {
			t.Errorf("the refresh carried Cookie %q", v)
		}
		if s := c.Stats(); s.Refreshes != 0 {
			t.Errorf("%d background refreshes, want 0", s.Refreshes)
		}
	})
}

// TestRefreshCoalescesWithMisses: misses for a key whose refresh is at the
// app (here: the entry was purged meanwhile) wait for it instead of asking
// the app themselves.
func TestRefreshCoalescesWithMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := swrApp()
		release := gated(a)
		c := newCache(t, Config{})
		defer c.Close()
		defer release() // before Close, should the test fail
		h := c.Wrap(a)
		do(h, "GET", "/")
		time.Sleep(2 * time.Second)
		do(h, "GET", "/") // starts the refresh
		synctest.Wait()
		c.Purge("", "")
		const n = 10
		ws := make([]*recW, n)
		var wg sync.WaitGroup
		for i := range ws {
			wg.Add(1)
			go func() { defer wg.Done(); ws[i] = do(h, "GET", "/") }()
		}
		synctest.Wait()
		release()
		wg.Wait()
		for i, w := range ws {
			if string(w.body) != "v2" || w.get("Cache-Status") != "berth; hit" && w.get("Cache-Status") != "berth; fwd=miss; collapsed" {
				t.Errorf("miss %d: %q %q", i, w.body, w.get("Cache-Status"))
			}
		}
		if got := a.calls.Load(); got != 2 {
			t.Errorf("%d app requests, want 2 (the misses waited for the refresh)", got)
		}
	})
}

// TestFailedRefreshKeepsStale: a refresh the app fails (503) within the
// entry's stale windows leaves it as it was (RFC 5861 §4), logs why at
// debug level, and the next stale hit tries again.
func TestFailedRefreshKeepsStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		a := &app{respond: func(n int64, _ *balancer.Exchange) (int, []string, string) {
			if down.Load() {
				return 503, []string{"Cache-Control", "max-age=60"}, "down"
			}
			return 200, []string{"Cache-Control", "max-age=1, stale-while-revalidate=30"}, fmt.Sprint("v", n)
		}}
		var logs testenv.LogBuffer
		c := newCache(t, Config{Log: logs.Logger(slog.LevelDebug)})
		defer c.Close()
		h := c.Wrap(a)
		do(h, "GET", "/")
		down.Store(true)
		time.Sleep(3 * time.Second)
		for i := 0; i < 2; i++ {
			w := do(h, "GET", "/")
			if string(w.body) != "v1" || w.get("Cache-Status") != "berth; fwd=stale; ttl=-2" {
				t.Fatalf("stale hit %d: %q %q", i, w.body, w.get("Cache-Status"))
			}
			synctest.Wait()
		}
		if got := a.calls.Load(); got != 3 {
			t.Errorf("%d app requests, want 3 (a refresh per stale hit once the last failed)", got)
		}
		if out := logs.String(); !strings.Contains(out, "level=DEBUG msg=\"background refresh not stored; the stale entry stays\" path=/ status=503") {
			t.Errorf("log:\n%s", out)
		}
	})
}

// TestRefreshTimeout: a refresh the app does not answer within
// RefreshTimeout is abandoned (its request's context ends); the entry stays
// stale and the next stale hit refreshes again.
func TestRefreshTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ended atomic.Int32
		a := &app{respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			if n == 2 {
				<-x.Context().Done()
				ended.Add(1)
				return 504, nil, "gave up"
			}
			return 200, []string{"Cache-Control", "max-age=1, stale-while-revalidate=300"}, fmt.Sprint("v", n)
		}}
		c := newCache(t, Config{RefreshTimeout: 10 * time.Second})
		defer c.Close()
		h := c.Wrap(a)
		do(h, "GET", "/")
		time.Sleep(2 * time.Second)
		do(h, "GET", "/")
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if ended.Load() != 0 {
			t.Fatal("the refresh ended before RefreshTimeout")
		}
		if w := do(h, "GET", "/"); w.get("Cache-Status") != "berth; hit; ttl=-10" {
			t.Errorf("during the refresh: %q", w.get("Cache-Status"))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if ended.Load() != 1 {
			t.Fatal("the refresh outlived RefreshTimeout")
		}
		w := do(h, "GET", "/")
		if string(w.body) != "v1" || w.get("Cache-Status") != "berth; fwd=stale; ttl=-12" {
			t.Errorf("after the timeout: %q %q, want v1 and a new refresh", w.body, w.get("Cache-Status"))
		}
		synctest.Wait()
		if w := do(h, "GET", "/"); string(w.body) != "v3" {
			t.Errorf("after the second refresh: %q", w.body)
		}
	})
}

// TestCloseWaitsForRefreshes: Close cancels the refreshes under way and
// returns only when they have; after it, stale hits start none.
func TestCloseWaitsForRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := swrApp()
		release := gated(a) // this app ignores the cancellation
		defer release()
		c := newCache(t, Config{})
		h := c.Wrap(a)
		do(h, "GET", "/")
		time.Sleep(2 * time.Second)
		do(h, "GET", "/")
		synctest.Wait()
		var closed atomic.Bool
		go func() { c.Close(); closed.Store(true) }()
		synctest.Wait()
		if closed.Load() {
			t.Fatal("Close returned while a refresh was still at the app")
		}
		release()
		synctest.Wait()
		if !closed.Load() {
			t.Fatal("Close did not return once the refresh ended")
		}
		time.Sleep(2 * time.Second) // v2, stored by the refresh, is stale too
		w := do(h, "GET", "/")
		synctest.Wait()
		if w.get("Cache-Status") != "berth; hit; ttl=-1" || a.calls.Load() != 2 {
			t.Errorf("after Close: %q, %d app requests; want a stale hit and no new refresh", w.get("Cache-Status"), a.calls.Load())
		}
	})
}

// TestCloseCancelsRefreshes: an app that honours the request's context
// sees it end on Close.
func TestCloseCancelsRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &app{respond: func(n int64, x *balancer.Exchange) (int, []string, string) {
			if n > 1 {
				<-x.Context().Done()
				return 503, nil, ""
			}
			return 200, []string{"Cache-Control", "max-age=1, stale-while-revalidate=30"}, "v1"
		}}
		c := newCache(t, Config{})
		h := c.Wrap(a)
		do(h, "GET", "/")
		time.Sleep(2 * time.Second)
		do(h, "GET", "/")
		synctest.Wait()
		c.Close()
		if w := do(h, "GET", "/"); string(w.body) != "v1" {
			t.Errorf("after Close: %q", w.body)
		}
	})
}

// TestNoRefreshWhenUnavailable: while no worker can answer, a stale hit
// starts no refresh (it would only wait in the queue); once one can, the
// next stale hit does.
func TestNoRefreshWhenUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		a := swrApp()
		c := newCache(t, Config{Unavailable: down.Load})
		defer c.Close()
		h := c.Wrap(a)
		do(h, "GET", "/")
		down.Store(true)
		time.Sleep(2 * time.Second)
		if w := do(h, "GET", "/"); string(w.body) != "v1" || w.get("Cache-Status") != "berth; hit; ttl=-1" {
			t.Errorf("during the outage: %q %q", w.body, w.get("Cache-Status"))
		}
		synctest.Wait()
		if n := a.calls.Load(); n != 1 {
			t.Errorf("%d app requests during the outage, want 1 (no refresh)", n)
		}
		down.Store(false)
		if w := do(h, "GET", "/"); w.get("Cache-Status") != "berth; fwd=stale; ttl=-1" {
			t.Errorf("after the outage: %q, want a refresh started", w.get("Cache-Status"))
		}
		synctest.Wait()
		if n := a.calls.Load(); n != 2 {
			t.Errorf("%d app requests, want 2", n)
		}
	})
}
