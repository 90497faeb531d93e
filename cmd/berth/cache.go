package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"berth/balancer"
	"berth/balancer/cache"
)

// newCache builds the response cache of cfg, or nil when --cache=off. It
// learns that no worker can answer from the pool, so that it can serve a
// stale entry at once rather than after the queue timeout.
func newCache(cfg *serveConfig, pool *balancer.Pool, log *slog.Logger) (*cache.Cache, error) {
	if cfg.Cache == "off" {
		return nil, nil
	}
	c, err := cache.New(cache.Config{
		MaxBytes:    cfg.cacheBytes,
		MaxEntry:    cfg.cacheEntryBytes,
		VaryCookies: cfg.CacheVaryCookies,
		Unavailable: func() bool { return len(pool.Upstreams()) == 0 },
		Log:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("response cache: %w", err)
	}
	return c, nil
}

// cacheStatus is the cache's part of `berth status`.
type cacheStatus struct {
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	Stale  uint64 `json:"stale"`
	Bypass uint64 `json:"bypass"`
	// Refreshes are the cache's own background requests
	// (stale-while-revalidate), not counted in Misses.
	Refreshes uint64 `json:"refreshes"`
	Entries   int64  `json:"entries"`
	Bytes     int64  `json:"bytes"`
	MaxSize   int64  `json:"max_bytes"`
}

func statusOfCache(c *cache.Cache, maxBytes int64) *cacheStatus {
	if c == nil {
		return nil
	}
	s := c.Stats()
	return &cacheStatus{Hits: s.Hits, Misses: s.Misses, Stale: s.Stale, Bypass: s.Bypass, Refreshes: s.Refreshes, Entries: s.Entries, Bytes: s.Bytes, MaxSize: maxBytes}
}

// String is the status line of the cache.
func (s *cacheStatus) String() string {
	rate := ""
	if n := s.Hits + s.Misses + s.Stale; n > 0 {
		rate = fmt.Sprintf(" (%.1f%% answered from the cache)", 100*float64(s.Hits+s.Stale)/float64(n))
	}
	return fmt.Sprintf("cache: %d entries, %.1f of %.0f MiB; %d hits, %d misses, %d stale, %d bypassed, %d refreshed in the background%s",
		s.Entries, float64(s.Bytes)/(1<<20), float64(s.MaxSize)/(1<<20), s.Hits, s.Misses, s.Stale, s.Bypass, s.Refreshes, rate)
}

// handlePurge is the admin API's POST /cache/purge?host=H&prefix=P.
func handlePurge(c *cache.Cache) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c == nil {
			http.Error(w, "the response cache is off (--cache=off)", http.StatusConflict)
			return
		}
		n := c.Purge(r.FormValue("host"), r.FormValue("prefix"))
		fmt.Fprintf(w, "%d\n", n)
	})
}

const cacheAbout = `Removes the responses the cache of app NAME (or of the only app running)
holds for paths that start with PATH-PREFIX (every path if none is given), of
every host or of --host HOST only. A PATH-PREFIX starts with /.`

// runCache is `berth cache purge [NAME] [PATH-PREFIX] [--host HOST]`.
func runCache(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("cache", "berth cache purge [NAME] [PATH-PREFIX] [--host HOST]", cacheAbout)
	host := cmd.String("host", "", "purge only the responses for this Host")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return usageExit("cache", err, stderr)
	}
	if len(pos) == 0 || pos[0] != "purge" {
		return usageExit("cache", &usageError{"want 'berth cache purge [NAME] [PATH-PREFIX]'; 'berth cache -h' says more"}, stderr)
	}
	pos = pos[1:]
	// A path prefix starts with "/"; anything else is the app's name.
	var prefix string
	if n := len(pos); n > 0 && strings.HasPrefix(pos[n-1], "/") {
		prefix, pos = pos[n-1], pos[:n-1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	app, dir, err := pickApp(ctx, pos)
	if err != nil {
		return usageExit("cache", err, stderr)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://berth/cache/purge",
		strings.NewReader(url.Values{"host": {*host}, "prefix": {prefix}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := adminClient(dir).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "berth cache: %v\n", adminError(app, dir, err))
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintf(stderr, "berth cache: %s: %s", app, body)
		return 1
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	what := "every path"
	if prefix != "" {
		what = "paths under " + prefix
	}
	if *host != "" {
		what += " of " + *host
	}
	fmt.Fprintf(stdout, "%s: purged %d cached responses (%s)\n", app, n, what)
	return 0
}
