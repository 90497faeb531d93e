package metrics

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"berth/balancer"
)

// Config configures New. Pool is required.
type Config struct {
	// App is the app's name, a constant label "app" on every series.
	App string
	// Pool is read at scrape time for the queue and the workers.
	Pool *balancer.Pool
	// Workers reports the number of workers by state ("wanted", "ready",
	// "starting", …) at scrape time. If nil, only "ready" (the pool's) and
	// "busy" are reported.
	Workers func() map[string]int
	// Draining reports whether berth is draining. If nil, never.
	Draining func() bool
	// Recycles reports how many workers were replaced for a limit since
	// berth started, by kind ("memory", "max_requests", "blocked"; a
	// counter). If nil, the series is absent.
	Recycles func() map[string]int
	// Restarts reports, per ready worker, how many times its slot was
	// restarted after an exit. If nil, the series is absent.
	Restarts func() map[string]int
	// Proc is the /proc directory read for worker memory and CPU. If
	// empty, "/proc"; "-" turns those series off.
	Proc string
	// Buckets are the latency histograms' upper bounds in seconds. If nil,
	// DefaultBuckets.
	Buckets []float64
	// ProcessCollectors adds the Go runtime's and berth's own process
	// series (go_*, process_*). Off by default.
	ProcessCollectors bool
}

// CacheStats is what the response cache counts: answers by how the cache
// served them, and what it holds.
type CacheStats struct {
	Hits, Misses, Stale, Bypass uint64
	Entries, Bytes              int64
}

// BufferStats is what the buffering link counts: bodies that passed
// through unbuffered because none could be held on disk, and the memory
// held bodies take now.
type BufferStats struct {
	HoldFailures, MemoryBytes int64
}

// DefaultBuckets suit web requests: 1 ms to 10 s.
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is one berth's registry and its request link.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	duration prometheus.Histogram
	queue    prometheus.Histogram
	events   *prometheus.CounterVec

	cache  atomic.Pointer[func() CacheStats]  // see SetCache
	buffer atomic.Pointer[func() BufferStats] // see SetBuffer

	none    *series    // requests no worker took
	mu      sync.Mutex // serializes making a worker's series
	workers sync.Map   // *balancer.Upstream → *series
}

// Event names for CountEvent.
const (
	EventSpawn        = "spawn"
	EventSpawnFailure = "spawn_failure"
	EventExit         = "exit"
	EventRestart      = "restart"
	EventRecycle      = "recycle"
)

// methods are the method label's values; any other method is "other".
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}

var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// series are one worker's request counters, by method and status class.
type series [len(methods)][len(classes)]prometheus.Counter

// New returns a Metrics with its own registry.
func New(cfg Config) *Metrics {
	if cfg.Buckets == nil {
		cfg.Buckets = DefaultBuckets
	}
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry()}
	constLabels := prometheus.Labels{}
	if cfg.App != "" {
		constLabels["app"] = cfg.App
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_requests_total", Help: "Requests answered, by worker (none: no worker took it), method and status class.", ConstLabels: constLabels,
	}, []string{"worker", "method", "code"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "berth_request_duration_seconds", Help: "Time from a request's head to the end of its response, in berth.", ConstLabels: constLabels, Buckets: cfg.Buckets,
	})
	m.queue = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "berth_request_queue_seconds", Help: "Time a request waited for a ready worker.", ConstLabels: constLabels, Buckets: cfg.Buckets,
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_worker_events_total", Help: "Worker lifecycle events: spawn, spawn_failure, exit, restart, recycle.", ConstLabels: constLabels,
	}, []string{"event"})
	for _, e := range []string{EventSpawn, EventSpawnFailure, EventExit} {
		m.events.WithLabelValues(e) // present at 0 from the start
	}
	m.reg.MustRegister(m.requests, m.duration, m.queue, m.events, &poolCollector{m: m, constLabels: constLabels})
	if cfg.ProcessCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m.none = m.makeSeries("none")
	return m
}

// SetCache makes the scrape report the response cache's counts from f
// (without it, the cache series are absent). It may be called while
// scrapes run: the cache is made after the status listener opens.
func (m *Metrics) SetCache(f func() CacheStats) { m.cache.Store(&f) }

// SetBuffer makes the scrape report the buffering link's counts from f
// (without it, the buffer series are absent), as SetCache does.
func (m *Metrics) SetBuffer(f func() BufferStats) { m.buffer.Store(&f) }

// Registry is the registry to serve (promhttp.HandlerFor).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CountEvent counts a worker lifecycle event (EventSpawn, …).
func (m *Metrics) CountEvent(event string) { m.events.WithLabelValues(event).Inc() }

// Forget drops the series of a worker that is gone.
func (m *Metrics) Forget(up *balancer.Upstream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.workers.LoadAndDelete(up); ok {
		m.requests.DeletePartialMatch(prometheus.Labels{"worker": up.Name})
	}
}

func (m *Metrics) makeSeries(worker string) *series {
	var s series
	for i, meth := range methods {
		for j, c := range classes {
			s[i][j] = m.requests.WithLabelValues(worker, meth, c)
		}
	}
	return &s
}

func (m *Metrics) seriesOf(up *balancer.Upstream) *series {
	if up == nil {
		return m.none
	}
	if s, ok := m.workers.Load(up); ok {
		return s.(*series)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.workers.Load(up); ok {
		return s.(*series)
	}
	s := m.makeSeries(up.Name)
	m.workers.Store(up, s)
	return s
}

// Link returns the link that counts and times every request, in front of
// next.
func (m *Metrics) Link(next balancer.Handler) balancer.Handler {
	return &link{m: m, next: next}
}

type link struct {
	m    *Metrics
	next balancer.Handler
}

// statuser is what the front door's writer (and wrappers that keep it)
// tell of the response.
type statuser interface{ Status() int }

func (l *link) ServeExchange(x *balancer.Exchange) {
	start := time.Now()
	w := x.W
	l.next.ServeExchange(x)
	d := time.Since(start)
	status := 0
	if s, ok := w.(statuser); ok {
		status = s.Status()
	}
	c := status/100 - 1
	if c < 0 || c >= len(classes) {
		c = len(classes) - 1 // not answered: the front door answers 500
	}
	l.m.seriesOf(x.Worker)[methodIndex(x.Req.Method)][c].Inc()
	l.m.duration.Observe(d.Seconds())
	if x.Worker != nil {
		l.m.queue.Observe(x.QueueWait.Seconds())
	}
}

func methodIndex(m []byte) int {
	switch string(m) { // no allocation: the compiler compares in place
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	}
	return 7
}

// poolCollector reads the pool and the workers at scrape time.
type poolCollector struct {
	m            *Metrics
	constLabels  prometheus.Labels
	once         sync.Once
	queue        *prometheus.Desc
	workers      *prometheus.Desc
	inflight     *prometheus.Desc
	rss          *prometheus.Desc
	cpu          *prometheus.Desc
	draining     *prometheus.Desc
	recycles     *prometheus.Desc
	restarts     *prometheus.Desc
	cacheReqs    *prometheus.Desc
	cacheItems   *prometheus.Desc
	cacheBytes   *prometheus.Desc
	holdFailures *prometheus.Desc
	bufferMem    *prometheus.Desc
}

func (c *poolCollector) descs() {
	c.once.Do(func() {
		c.queue = prometheus.NewDesc("berth_queue_length", "Requests waiting for a ready worker.", nil, c.constLabels)
		c.workers = prometheus.NewDesc("berth_workers", "Workers by state.", []string{"state"}, c.constLabels)
		c.inflight = prometheus.NewDesc("berth_worker_inflight", "Requests a worker is serving now.", []string{"worker"}, c.constLabels)
		c.rss = prometheus.NewDesc("berth_worker_resident_memory_bytes", "A worker process's resident memory.", []string{"worker"}, c.constLabels)
		c.cpu = prometheus.NewDesc("berth_worker_cpu_seconds_total", "CPU time (user and system) a worker process used.", []string{"worker"}, c.constLabels)
		c.draining = prometheus.NewDesc("berth_draining", "1 while berth drains (berth drain, or stopping), else 0.", nil, c.constLabels)
		c.recycles = prometheus.NewDesc("berth_worker_recycles_total", "Workers replaced for a limit, by reason (max_requests, memory, blocked).", []string{"reason"}, c.constLabels)
		c.cacheReqs = prometheus.NewDesc("berth_cache_requests_total", "Requests that went through the response cache, by result (hit, miss, stale, bypass).", []string{"result"}, c.constLabels)
		c.cacheItems = prometheus.NewDesc("berth_cache_entries", "Responses the cache holds.", nil, c.constLabels)
		c.cacheBytes = prometheus.NewDesc("berth_cache_bytes", "Bytes the cache's entries take.", nil, c.constLabels)
		c.holdFailures = prometheus.NewDesc("berth_buffer_hold_failures_total", "Request and response bodies that passed through unbuffered because the buffer directory could not take them (no file could be made or written: a full disk).", nil, c.constLabels)
		c.bufferMem = prometheus.NewDesc("berth_buffer_memory_bytes", "Bytes of request and response bodies held in memory now.", nil, c.constLabels)
		c.restarts = prometheus.NewDesc("berth_worker_restarts", "Times a ready worker's slot was restarted after an exit.", []string{"worker"}, c.constLabels)
	})
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	c.descs()
	for _, d := range []*prometheus.Desc{c.queue, c.workers, c.inflight, c.rss, c.cpu, c.draining, c.recycles, c.restarts, c.cacheReqs, c.cacheItems, c.cacheBytes, c.holdFailures, c.bufferMem} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.descs()
	cfg := c.m.cfg
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(cfg.Pool.Queued()))
	ups := cfg.Pool.Upstreams()
	states := map[string]int{}
	if cfg.Workers != nil {
		for k, v := range cfg.Workers() {
			states[k] = v
		}
	}
	if _, ok := states["ready"]; !ok {
		states["ready"] = len(ups)
	}
	busy, held := 0, 0
	for _, u := range ups {
		n := u.Inflight()
		if n > 0 {
			busy++
		}
		if u.Held() != 0 {
			held++
		}
		ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(n), u.Name)
		if cfg.Proc != "-" && u.Pid > 0 {
			if rss, cpu, ok := readProc(cfg.Proc, u.Pid); ok {
				ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, rss, u.Name)
				ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, cpu, u.Name)
			}
		}
	}
	states["busy"] = busy
	states["held"] = held
	for k, v := range states {
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(v), k)
	}
	d := 0.0
	if cfg.Draining != nil && cfg.Draining() {
		d = 1
	}
	ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, d)
	if cfg.Recycles != nil {
		kinds := cfg.Recycles()
		for _, k := range []string{"max_requests", "memory", "blocked"} {
			if _, ok := kinds[k]; !ok {
				kinds[k] = 0 // every reason is a series from the start
			}
		}
		for k, n := range kinds {
			ch <- prometheus.MustNewConstMetric(c.recycles, prometheus.CounterValue, float64(n), k)
		}
	}
	if f := c.m.cache.Load(); f != nil {
		st := (*f)()
		for _, r := range []struct {
			result string
			n      uint64
		}{{"hit", st.Hits}, {"miss", st.Misses}, {"stale", st.Stale}, {"bypass", st.Bypass}} {
			ch <- prometheus.MustNewConstMetric(c.cacheReqs, prometheus.CounterValue, float64(r.n), r.result)
		}
		ch <- prometheus.MustNewConstMetric(c.cacheItems, prometheus.GaugeValue, float64(st.Entries))
		ch <- prometheus.MustNewConstMetric(c.cacheBytes, prometheus.GaugeValue, float64(st.Bytes))
	}
	if f := c.m.buffer.Load(); f != nil {
		st := (*f)()
		ch <- prometheus.MustNewConstMetric(c.holdFailures, prometheus.CounterValue, float64(st.HoldFailures))
		ch <- prometheus.MustNewConstMetric(c.bufferMem, prometheus.GaugeValue, float64(st.MemoryBytes))
	}
	if cfg.Restarts != nil {
		for w, n := range cfg.Restarts() {
			ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.GaugeValue, float64(n), w)
		}
	}
}

// Linux's USER_HZ, which /proc/PID/stat counts in; it is 100 on every
// architecture Linux supports today.
const userHZ = 100

// readProc reads a process's resident memory (bytes) and CPU time
// (seconds) from /proc.
func readProc(proc string, pid int) (rss, cpu float64, ok bool) {
	dir := proc + "/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name may hold spaces and parentheses: fields count from
	// the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15, rss
	// (pages) field 24.
	if len(f) < 22 {
		return 0, 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	pages, err3 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return float64(pages * int64(os.Getpagesize())), float64(ut+st) / userHZ, true
}
