package main

// loads.go: the loads, and running one of them against a running peer
// with wrk (or curl, for the download).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

type loadKind int

const (
	wrkLoad      loadKind = iota // wrk for the run's duration: req/s, latency, CPU, RSS
	downloadLoad                 // one curl download: the front end's peak RSS
	// spreadLoad fills a cache with entries distinct URLs, then measures
	// wrk over all of them against wrk over one of them, same peer, same
	// round.
	spreadLoad
)

// load is one scenario. A new one (a bigger body, a POST) is one more
// entry in allLoads and, if the app needs a route, a case in
// testdata/app/app.js.
type load struct {
	name  string // for BENCH_LOADS
	title string
	path  string
	conns int
	kind  loadKind
	note  string // printed under the table
	// entries is the number of distinct URLs of a spreadLoad: path1 …
	// path<entries>.
	entries int
}

func allLoads() []*load {
	return []*load{
		{name: "hello-c1", title: "hello (12-byte body), 1 connection", path: "/", conns: 1},
		{name: "hello-c16", title: "hello (12-byte body), 16 connections", path: "/", conns: 16},
		{name: "hello-c64", title: "hello (12-byte body), 64 connections", path: "/", conns: 64},
		{name: "4k-c64", title: "4 KiB body, 64 connections", path: "/4k", conns: 64},
		{name: "cached-c64", title: "cached: hello with `Cache-Control: public, max-age=60`, 64 connections", path: "/cached", conns: 64,
			note: "nginx answers from `proxy_cache`, Passenger from its turbocache, berth from its response cache; direct and cluster have no cache (the reference)."},
		{name: "cached10k-c64", title: "cached, 10,000 distinct URLs (`/cached/1` … `/cached/10000`, `public, max-age=3600`), 64 connections",
			path: "/cached/", conns: 64, kind: spreadLoad, entries: 10000,
			note: "Each run first asks for every URL once (the cache fills), then measures wrk cycling over all 10,000 URLs and wrk on one of them " +
				"(`/cached/1`), both through the same script ([`testdata/spread.lua`](testdata/spread.lua)), in alternating order by round. " +
				"× 1 URL is the same-run ratio; hit rates come from berth's cache counters (`berth status --json`) around each run, " +
				"entries from the same. Issue 9's target: with 10,000 entries, req/s and hit rate within 10 % of the single-entry case (× 1 URL ≥ 0.90). " +
				"Passenger's turbocache holds 8 entries; direct and cluster have no cache."},
		{name: "static-c64", title: "static file (4 KiB from `public/static/`), 64 connections", path: "/static/4k.txt", conns: 64,
			note: "Served by a front end that serves `public/` itself; a peer that passes the request to the app gets the app's 404 and shows n/a (berth serves it by default: `--static` is on and the app has `public/`)."},
		{name: "download", title: "one 50 MiB streamed download (curl), front end's peak RSS", path: "/download", conns: 1, kind: downloadLoad,
			note: "The client reads at 25 MiB/s (curl `--limit-rate 25M`). Issue 8's target: berth ≤ 40 MiB during the download. RSS is the sum of VmRSS over the front end's processes, sampled every 20 ms; nginx buffers to a temp file, so its RSS stays flat."},
	}
}

// threads is wrk's thread count: 2 (the machine's cores), but never more
// than the connections (wrk refuses that).
func (l *load) threads() int { return min(2, l.conns) }

// wrkScript makes wrk print its summary as one JSON line (the latency
// percentiles from its full histogram, in microseconds).
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,' ..
    '"p50_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`

// wrkSummary is what wrkScript prints.
type wrkSummary struct {
	Requests   float64 `json:"requests"`
	DurationUS float64 `json:"duration_us"`
	Bytes      float64 `json:"bytes"`
	Connect    float64 `json:"connect"`
	Read       float64 `json:"read"`
	Write      float64 `json:"write"`
	Status     float64 `json:"status"`
	Timeout    float64 `json:"timeout"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	MaxUS      float64 `json:"max_us"`
}

var benchJSON = regexp.MustCompile(`(?m)^BENCHJSON (\{.*\})\s*$`)

func parseWrk(out string) (wrkSummary, error) {
	m := benchJSON.FindStringSubmatch(out)
	if m == nil {
		return wrkSummary{}, fmt.Errorf("wrk printed no summary: %s", strings.Join(strings.Fields(out), " "))
	}
	var s wrkSummary
	if err := json.Unmarshal([]byte(m[1]), &s); err != nil {
		return wrkSummary{}, fmt.Errorf("wrk summary %q: %w", m[1], err)
	}
	return s, nil
}

// result is one run: one load against one peer in one round.
type result struct {
	round    int
	err      error // the run failed (the peer did not start, wrk failed)
	requests float64
	rps      float64
	p50, p99 float64 // µs
	errors   float64 // socket errors + non-2xx/3xx answers
	status   float64 // non-2xx/3xx answers
	frontCPU float64 // µs of CPU per request, front-end processes
	appCPU   float64 // µs of CPU per request, app processes
	frontRSS int64   // peak bytes, front-end processes
	baseRSS  int64   // bytes before the load, front-end processes
	seconds  float64 // download: its duration
	bytes    float64 // download: bytes received
	stalls   int64   // times a CPU of the machine stopped for stallMin or more during the run (-1: unknown)
	idle     float64 // share of the machine's CPU time spent idle during the run (-1: unknown)
	switches float64 // context switches on the whole machine per request (-1: unknown)
	hitRate  float64 // spread: share of answers that were cache hits (-1: unknown)
	entries  int64   // spread: entries in the cache after the run (-1: unknown)
	ref      *result // spread: the same peer's run over one URL, same round
	logs     string  // the end of the peer's logs, when the run had errors
}

// valid reports whether the run measured what it meant to: it answered,
// and mostly with 2xx/3xx (the static scenario against a peer that passes
// the request to the app gets 404s).
func (r *result) valid() bool {
	return r.err == nil && r.requests > 0 && r.status*2 < r.requests
}

// runWrk warms the peer up, then measures one wrk run with the CPU and
// RSS of the peer's processes around it.
func (h *harness) runWrk(ctx context.Context, in *instance, l *load) result {
	args := func(d time.Duration, extra ...string) []string {
		a := []string{"-t", strconv.Itoa(l.threads()), "-c", strconv.Itoa(l.conns),
			"-d", fmt.Sprintf("%.0fs", d.Seconds()), "--latency"}
		return append(append(a, extra...), in.url(l.path))
	}
	if h.warmup > 0 {
		if _, err := h.wrk(ctx, args(h.warmup)); err != nil {
			return result{err: fmt.Errorf("warm-up: %w", err)}
		}
	}
	return h.measure(ctx, in, args(h.duration, "-s", h.script))
}

// measure runs wrk with args (which must name a script with the summary
// hook) and reads the CPU and RSS of the peer's processes around it.
func (h *harness) measure(ctx context.Context, in *instance, args []string) result {
	set := in.procs()
	rss := startRSSSampler(ctx, set.front, 100*time.Millisecond)
	stalls := h.stalls.count()
	profiled := func() error { return nil }
	if h.prof != nil && in.pprof != "" {
		profiled = h.prof.start(ctx, in, h.duration)
	}
	m0, mok0 := readMachineStat()
	out, err := h.wrk(ctx, args)
	m1, mok1 := readMachineStat()
	if perr := profiled(); err == nil {
		err = perr
	}
	if stalls >= 0 {
		stalls = h.stalls.count() - stalls
	}
	peak := rss.Stop(set.front)
	frontTicks, appTicks := cpuDelta(set.front), cpuDelta(set.app)
	if err != nil {
		return result{err: err}
	}
	s, err := parseWrk(out)
	if err != nil {
		return result{err: err}
	}
	r := result{
		requests: s.Requests,
		p50:      s.P50US,
		p99:      s.P99US,
		errors:   s.Connect + s.Read + s.Write + s.Timeout + s.Status,
		status:   s.Status,
		frontRSS: peak,
		stalls:   stalls,
		idle:     -1,
		switches: -1,
	}
	if mok0 && mok1 && m1.total > m0.total {
		r.idle = float64(m1.idle-m0.idle) / float64(m1.total-m0.total)
		if s.Requests > 0 {
			r.switches = float64(m1.switches-m0.switches) / s.Requests
		}
	}
	if r.errors > 0 {
		r.logs = in.logTails(3000)
	}
	if s.DurationUS > 0 {
		r.rps = s.Requests / (s.DurationUS / 1e6)
	}
	if s.Requests > 0 {
		perTick := 1e6 / h.clk // µs per clock tick
		r.frontCPU = float64(frontTicks) * perTick / s.Requests
		r.appCPU = float64(appTicks) * perTick / s.Requests
	}
	return r
}

func (h *harness) wrk(ctx context.Context, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, h.duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, h.tools["wrk"], args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, strings.Join(strings.Fields(string(out)), " "))
	}
	return string(out), nil
}

// downloadRate is curl's --limit-rate for the download: slower than any
// peer can send (a front end that reads the app faster than the client
// takes it must buffer, and that is what the scenario is about), and long
// enough (about 2 s) for the RSS samples to see the peak.
const downloadRate = "25M"

// runDownload fetches the 50 MiB response once with curl, at downloadRate,
// while sampling the front end's RSS every 20 ms.
func (h *harness) runDownload(ctx context.Context, in *instance, l *load) result {
	set := in.procs()
	base := sumRSS(set.front)
	rss := startRSSSampler(ctx, set.front, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, h.tools["curl"], "-sS", "-o", os.DevNull, "--limit-rate", downloadRate,
		"-w", "%{http_code} %{size_download} %{time_total}", in.url(l.path)).Output()
	peak := rss.Stop(set.front)
	if err != nil {
		return result{err: fmt.Errorf("curl %s: %w", in.url(l.path), err)}
	}
	var code int
	var size, secs float64
	if _, err := fmt.Sscan(string(out), &code, &size, &secs); err != nil {
		return result{err: fmt.Errorf("curl output %q: %w", out, err)}
	}
	r := result{requests: 1, frontRSS: peak, baseRSS: base, seconds: secs, bytes: size}
	if code < 200 || code > 299 || size != 50*1024*1024 {
		r.status, r.errors = 1, 1
	}
	return r
}

// writeScript puts the wrk script in the work directory.
func writeScript(dir string) (string, error) {
	p := filepath.Join(dir, "summary.lua")
	if err := os.WriteFile(p, []byte(wrkScript), 0o644); err != nil {
		return "", fmt.Errorf("wrk script: %w", err)
	}
	return p, nil
}

// writeSpreadScript puts testdata/spread.lua, followed by the summary
// hook, in the work directory.
func writeSpreadScript(dir string) (string, error) {
	lua, err := testdata.ReadFile("testdata/spread.lua")
	if err != nil {
		return "", fmt.Errorf("wrk spread script: %w", err)
	}
	p := filepath.Join(dir, "spread.lua")
	if err := os.WriteFile(p, append(lua, wrkScript...), 0o644); err != nil {
		return "", fmt.Errorf("wrk spread script: %w", err)
	}
	return p, nil
}

// runSpread fills the peer's cache with every URL of l once, then
// measures wrk over all of them and wrk over the first alone (the
// reference), in an order that alternates with the round. The result is
// the run over all URLs, with the reference's req/s, hit rate and CPU.
func (h *harness) runSpread(ctx context.Context, in *instance, l *load, round int) result {
	if err := fill(ctx, in, l); err != nil {
		return result{err: err}
	}
	args := func(d time.Duration, urls int) []string {
		return []string{"-t", strconv.Itoa(l.threads()), "-c", strconv.Itoa(l.conns),
			"-d", fmt.Sprintf("%.0fs", d.Seconds()), "--latency", "-s", h.spreadScript,
			in.url("/"), "--", strconv.Itoa(urls), l.path}
	}
	if h.warmup > 0 {
		if _, err := h.wrk(ctx, args(h.warmup, l.entries)); err != nil {
			return result{err: fmt.Errorf("warm-up: %w", err)}
		}
	}
	run := func(urls int) result {
		before, counted := h.cacheCounts(ctx, in)
		r := h.measure(ctx, in, args(h.duration, urls))
		r.hitRate, r.entries = -1, -1
		if after, ok := h.cacheCounts(ctx, in); counted && ok {
			r.entries = after.Entries
			if n := after.answered() - before.answered(); n > 0 {
				r.hitRate = float64(after.Hits-before.Hits) / float64(n)
			}
		}
		return r
	}
	var one, all result
	if round%2 == 1 {
		one, all = run(1), run(l.entries)
	} else {
		all, one = run(l.entries), run(1)
	}
	if one.err != nil {
		return result{err: fmt.Errorf("the run over one URL: %w", one.err)}
	}
	if !one.valid() {
		return result{err: fmt.Errorf("the run over one URL: %.0f of %.0f answers not 2xx/3xx", one.status, one.requests)}
	}
	all.ref = &one
	return all
}

// fill asks for every URL of l once, over a few keep-alive connections,
// and wants 200 for each.
func fill(ctx context.Context, in *instance, l *load) error {
	const conns = 8
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	defer client.CloseIdleConnections()
	next := make(chan int)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				url := in.url(l.path + strconv.Itoa(i))
				req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
				if err == nil {
					var resp *http.Response
					if resp, err = client.Do(req); err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != 200 {
							err = fmt.Errorf("GET %s: %s", url, resp.Status)
						}
					}
				}
				if err != nil {
					errs <- fmt.Errorf("fill the cache: %w", err)
					for range next {
					}
					return
				}
			}
		}()
	}
	for i := 1; i <= l.entries; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// cacheCounts are berth's cache counters, from `berth status --json`.
type cacheCounts struct {
	Hits    uint64 `json:"hits"`
	Misses  uint64 `json:"misses"`
	Stale   uint64 `json:"stale"`
	Entries int64  `json:"entries"`
}

// answered counts the requests the cache looked up.
func (c cacheCounts) answered() uint64 { return c.Hits + c.Misses + c.Stale }

// cacheCounts reads berth's cache counters; false for another peer, or
// when berth does not say.
func (h *harness) cacheCounts(ctx context.Context, in *instance) (cacheCounts, bool) {
	if in.berth == "" {
		return cacheCounts{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, in.bin, "status", "--json", in.berth).Output()
	if err != nil {
		return cacheCounts{}, false
	}
	return parseCacheCounts(out)
}

func parseCacheCounts(out []byte) (cacheCounts, bool) {
	var st struct {
		Cache *cacheCounts `json:"cache"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Cache == nil {
		return cacheCounts{}, false
	}
	return *st.Cache, true
}
