package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cacheApp starts berth on testdata/cache with the cache varying on the
// cookie "user", and returns it with the file that counts app requests.
func cacheApp(t *testing.T, args ...string) (*berthProc, string) {
	t.Helper()
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	args = append([]string{"--workers", "2", "--cache-vary-cookie", "user",
		"--env", "COUNT_FILE=" + count, "--env", "DOWN_FILE=" + filepath.Join(dir, "down")}, args...)
	b := startBerth(t, "testdata/cache", args...)
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	return b, count
}

// appRequests counts the requests for path that reached the app.
func appRequests(t *testing.T, count, path string) int {
	t.Helper()
	data, err := os.ReadFile(count)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if l == path {
			n++
		}
	}
	return n
}

type reply struct {
	status      int
	body        string
	setCookie   []string
	cacheStatus string
}

func cacheGet(t *testing.T, c *http.Client, url string, kv ...string) reply {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return reply{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
	}
	return reply{resp.StatusCode, string(body), resp.Header.Values("Set-Cookie"), resp.Header.Get("Cache-Status")}
}

// TestCacheNeverLeaks: 8 clients, each with its own cookies, header and
// credentials, over public, private, cookie-setting, Vary-ing,
// Authorization and vary-cookie routes; no client ever sees another's
// cookie or personal body.
func TestCacheNeverLeaks(t *testing.T) {
	b, count := cacheApp(t)
	var mu sync.Mutex
	sids := map[string]int{} // session cookie → client that got it
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			me := fmt.Sprint("c", i)
			kv := []string{"Cookie", "client=" + me + "; user=u" + me + "; _ga=" + strconv.Itoa(i*7919), "X-Client", me}
			for r := 0; r < 40; r++ {
				for path, want := range map[string]string{
					"/public":  "public page",
					"/private": "private for " + me,
					"/vary":    "vary for " + me,
					"/auth":    "auth for Bearer " + me,
					"/user":    "user u" + me,
				} {
					kv := kv
					if path == "/auth" {
						kv = append(kv, "Authorization", "Bearer "+me)
					}
					got := cacheGet(t, c, b.URL+path, kv...)
					if got.body != want || len(got.setCookie) != 0 {
						t.Errorf("client %s GET %s: %d %q Set-Cookie %q (Cache-Status %q)", me, path, got.status, got.body, got.setCookie, got.cacheStatus)
					}
					if got.cacheStatus == "" {
						t.Errorf("GET %s: no Cache-Status", path)
					}
				}
				got := cacheGet(t, c, b.URL+"/cookie", kv...)
				if len(got.setCookie) != 1 || !strings.HasPrefix(got.setCookie[0], "sid="+strings.TrimPrefix(got.body, "session ")+";") {
					t.Errorf("client %s GET /cookie: body %q with Set-Cookie %q", me, got.body, got.setCookie)
					continue
				}
				mu.Lock()
				if other, ok := sids[got.setCookie[0]]; ok {
					t.Errorf("client %d got the session cookie of client %d", i, other)
				}
				sids[got.setCookie[0]] = i
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// What must never be stored reached the app every time; what may be
	// stored, once per user (the user cookie is part of every key).
	for _, path := range []string{"/cookie", "/private", "/auth"} {
		if n := appRequests(t, count, path); n != 8*40 {
			t.Errorf("%d of %d requests for %s reached the app", n, 8*40, path)
		}
	}
	for _, path := range []string{"/public", "/vary", "/user"} {
		if n := appRequests(t, count, path); n != 8 {
			t.Errorf("%s reached the app %d times for 8 users, want 8", path, n)
		}
	}
}

// TestCacheCoalescing: 50 concurrent misses make one app request; with a
// cookie-setting response, 50, and no cookie crosses.
func TestCacheCoalescing(t *testing.T) {
	b, count := cacheApp(t)
	run := func(path string) []reply {
		out := make([]reply, 50)
		var wg sync.WaitGroup
		for i := range out {
			wg.Go(func() {
				c := &http.Client{Transport: &http.Transport{}}
				defer c.CloseIdleConnections()
				out[i] = cacheGet(t, c, b.URL+path)
			})
		}
		wg.Wait()
		return out
	}
	for _, r := range run("/slow") {
		if r.status != 200 || r.body != "slow page" {
			t.Errorf("/slow: %d %q", r.status, r.body)
		}
	}
	if n := appRequests(t, count, "/slow"); n != 1 {
		t.Errorf("50 concurrent misses made %d app requests, want 1", n)
	}
	seen := map[string]bool{}
	for _, r := range run("/slow-cookie") {
		if len(r.setCookie) != 1 || r.setCookie[0] != "sid="+strings.TrimPrefix(r.body, "session ") {
			t.Errorf("/slow-cookie: body %q with Set-Cookie %q", r.body, r.setCookie)
			continue
		}
		if seen[r.setCookie[0]] {
			t.Errorf("%s went to two clients", r.setCookie[0])
		}
		seen[r.setCookie[0]] = true
	}
	if n := appRequests(t, count, "/slow-cookie"); n != 50 {
		t.Errorf("50 cookie-setting requests made %d app requests, want 50", n)
	}
}

// TestCacheStaleIfError: with every worker dead and the app failing to
// start, a cached page still answers, marked stale, until its
// stale-if-error window (5 s past freshness) is over.
func TestCacheStaleIfError(t *testing.T) {
	b, count := cacheApp(t, "--queue-timeout", "500ms")
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	first := cacheGet(t, c, b.URL+"/sie")
	if first.status != 200 {
		t.Fatalf("/sie: %d %q", first.status, first.body)
	}
	stored := time.Now()
	// The app goes down: new workers fail, and the running ones die.
	if err := os.WriteFile(filepath.Join(filepath.Dir(count), "down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pids := fromWorkers(t, b.URL+"/pid", 2, func(body string) string { return strings.TrimSpace(body) })
	for pid := range pids {
		n, _ := strconv.Atoi(pid)
		syscall.Kill(n, syscall.SIGKILL)
	}
	b.WaitForN(`msg="worker exited"`, len(pids), 10*time.Second)
	checked := 0
	for time.Since(stored) < 5*time.Second {
		r := cacheGet(t, c, b.URL+"/sie")
		if time.Since(stored) < 1500*time.Millisecond {
			continue // may still be fresh
		}
		checked++
		if r.status != 200 || r.body != first.body || !strings.Contains(r.cacheStatus, "fwd-status=") && !strings.Contains(r.cacheStatus, "ttl=-") {
			t.Fatalf("%v after storing, with the app down: %d %q, Cache-Status %q", time.Since(stored), r.status, r.body, r.cacheStatus)
		}
		time.Sleep(200 * time.Millisecond) // pacing the polls, not waiting for an event
	}
	if checked == 0 {
		t.Fatal("the workers took the whole stale window to die")
	}
	t.Logf("%d stale answers while the app was down", checked)
	// Past the window: the app's unavailability shows.
	deadline := stored.Add(6500 * time.Millisecond)
	time.Sleep(time.Until(deadline))
	if r := cacheGet(t, c, b.URL+"/sie"); r.status < 500 {
		t.Errorf("past stale-if-error: %d %q, Cache-Status %q", r.status, r.body, r.cacheStatus)
	}
}

func TestCacheFlags(t *testing.T) {
	dir := writeApp(t, `{"cache_vary_cookie": ["user", "tier"], "cache_size": "8M"}`)
	c, err := parseServe([]string{dir, "--cache-max-entry", "64K"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache != "on" || c.cacheBytes != 8<<20 || c.cacheEntryBytes != 64<<10 || strings.Join(c.CacheVaryCookies, " ") != "user tier" {
		t.Errorf("cache %q size %d entry %d cookies %q", c.Cache, c.cacheBytes, c.cacheEntryBytes, c.CacheVaryCookies)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cache", "maybe"}, `--cache "maybe": want on or off`},
		{[]string{"--cache-size", "lots"}, `--cache-size "lots"`},
		{[]string{"--cache-max-entry", "0"}, `--cache-max-entry "0"`},
		{[]string{"--cache-size", "1M", "--cache-max-entry", "2M"}, "--cache-max-entry 2M is more than --cache-size 1M"},
		{[]string{"--cache-vary-cookie", "a=b"}, `--cache-vary-cookie "a=b": want a cookie name`},
	} {
		var stderr bytes.Buffer
		if code := run(append([]string{"serve", writeApp(t, "")}, tc.args...), &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

func TestCachePurgeCommand(t *testing.T) {
	b, count := cacheApp(t, "--name", "purgetest")
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, p := range []string{"/public", "/vary"} {
		cacheGet(t, c, b.URL+p)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--json", "purgetest"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"entries": 2`) {
		t.Fatalf("status: %d %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"cache", "purge", "purgetest", "/pub"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "purged 1 cached responses") {
		t.Fatalf("purge: %d %q %q", code, out.String(), errb.String())
	}
	if r := cacheGet(t, c, b.URL+"/public"); r.cacheStatus != "berth; fwd=miss; stored" {
		t.Errorf("after purge: %q", r.cacheStatus)
	}
	if r := cacheGet(t, c, b.URL+"/vary"); r.cacheStatus != "berth; hit" {
		t.Errorf("outside the prefix: %q", r.cacheStatus)
	}
	if n := appRequests(t, count, "/public"); n != 2 {
		t.Errorf("/public reached the app %d times, want 2", n)
	}
	out.Reset()
	if code := run([]string{"status", "purgetest"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "cache: 2 entries") || !strings.Contains(out.String(), "1 hits, 3 misses") {
		t.Errorf("status: %d %q", code, out.String())
	}
}
