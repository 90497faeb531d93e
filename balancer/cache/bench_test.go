package cache

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// nullW is a ResponseWriter that keeps nothing, like a front door whose
// buffer is already out.
type nullW struct{ n int }

func (w *nullW) WriteHead(r *h1.Response) error { w.n += len(r.Header); return nil }
func (w *nullW) Write(p []byte) (int, error)    { w.n += len(p); return len(p), nil }
func (w *nullW) Flush() error                   { return nil }

// benchReq is a typical browser GET.
func benchReq(target string) *h1.Request {
	return &h1.Request{Method: []byte("GET"), Target: []byte(target), Minor: 1, KeepAlive: true,
		Header: fields(
			"Host", "example.com",
			"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
			"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
			"Accept-Language", "en-US,en;q=0.5",
			"Accept-Encoding", "gzip, deflate, br, zstd",
			"Cookie", "_ga=GA1.1.123456789.1700000000; session=abcdef0123456789",
			"Connection", "keep-alive",
		)}
}

// helloApp answers like a proxy that reuses its response head: it
// allocates nothing itself, so what a benchmark counts is the link's.
func helloApp() balancer.Handler {
	return appWith(fields(
		"Content-Type", "text/plain; charset=utf-8",
		"Cache-Control", "public, max-age=3600",
		"Vary", "Accept-Encoding",
		"Date", time.Now().UTC().Format(http.TimeFormat),
		"ETag", `W/"c-abc"`))
}

// appWith answers "Hello World!" with the fields base, reusing its head.
func appWith(base h1.Fields) balancer.Handler {
	buf := make(h1.Fields, 0, 16)
	body := []byte("Hello World!")
	var resp h1.Response
	return balancer.HandlerFunc(func(x *balancer.Exchange) {
		resp = h1.Response{Minor: 1, Status: 200, ContentLength: 12, Header: append(buf[:0], base...)}
		x.W.WriteHead(&resp)
		x.W.Write(body)
	})
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU time per operation (GC included), which the
// machine's load does not inflate as it does ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// benchHit asks for targets in turn through one request, as a front-door
// connection reuses its request for the next one.
func benchHit(b *testing.B, c *Cache, targets []string) {
	h := c.Wrap(helloApp())
	ts := make([][]byte, len(targets))
	for i, t := range targets {
		ts[i] = []byte(t)
		h.ServeExchange(&balancer.Exchange{Req: benchReq(t), W: &nullW{}})
	}
	req := benchReq(targets[0])
	w := &nullW{}
	x := &balancer.Exchange{Req: req, W: w}
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		req.Target = ts[i%len(ts)]
		x.W = w
		h.ServeExchange(x)
	}
	reportCPU(b, start)
	b.StopTimer()
	if s := c.Stats(); s.Misses != uint64(len(targets)) {
		b.Fatalf("stats %+v: not all hits", s)
	}
}

// BenchmarkHit is one cached hello response through the link, Vary:
// Accept-Encoding and a cookie included.
func BenchmarkHit(b *testing.B) {
	c, _ := New(Config{VaryCookies: []string{"session"}})
	benchHit(b, c, []string{"/hello"})
}

// BenchmarkHitEntries is BenchmarkHit over 1 and over 10,000 distinct
// entries of the same shape, asked for in turn: the cost of a hit should
// not grow with what the cache holds (issue 9: within 10 %).
func BenchmarkHitEntries(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			c, _ := New(Config{VaryCookies: []string{"session"}})
			targets := make([]string, n)
			for i := range targets {
				targets[i] = fmt.Sprintf("/item/%d?page=1", 10000+i)
			}
			benchHit(b, c, targets)
			if s := c.Stats(); s.Entries != int64(n) {
				b.Fatalf("%d entries, want %d", s.Entries, n)
			}
		})
	}
}

// BenchmarkHitParallel is BenchmarkHit from every core.
func BenchmarkHitParallel(b *testing.B) {
	c, _ := New(Config{})
	h := c.Wrap(helloApp())
	h.ServeExchange(&balancer.Exchange{Req: benchReq("/hello"), W: &nullW{}})
	b.ReportAllocs()
	start := cpuTime()
	defer func() { reportCPU(b, start) }()
	b.RunParallel(func(pb *testing.PB) {
		req := benchReq("/hello")
		w := &nullW{}
		x := &balancer.Exchange{Req: req, W: w}
		for pb.Next() {
			x.W = w
			h.ServeExchange(x)
		}
	})
}

// BenchmarkMiss is a request whose response is stored, each time under a
// new key: policy, copying and insertion (the store evicts as it fills).
func BenchmarkMiss(b *testing.B) {
	c, _ := New(Config{MaxBytes: 8 << 20})
	h := c.Wrap(helloApp())
	targets := make([]string, 1<<16)
	for i := range targets {
		targets[i] = "/m/" + strings.Repeat("x", i%7) + fmt.Sprint(i)
	}
	w := &nullW{}
	x := &balancer.Exchange{W: w}
	reqs := make([]*h1.Request, len(targets))
	for i, t := range targets {
		reqs[i] = benchReq(t)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		x.Req = reqs[i%len(reqs)]
		x.W = w
		h.ServeExchange(x)
		if i%len(reqs) == len(reqs)-1 {
			c.Purge("", "")
		}
	}
	reportCPU(b, start)
}

// BenchmarkBypass is a POST through the link.
func BenchmarkBypass(b *testing.B) {
	c, _ := New(Config{})
	h := c.Wrap(helloApp())
	req := benchReq("/form")
	req.Method = []byte("POST")
	benchOne(b, h, req)
}

// BenchmarkUncacheable is a GET whose responses carry no freshness (the
// common dynamic page): each one goes to the app, past the key's
// hit-for-miss marker, through a recorder that stores nothing.
func BenchmarkUncacheable(b *testing.B) {
	c, _ := New(Config{})
	h := c.Wrap(appWith(fields("Content-Type", "text/plain; charset=utf-8", "Date", time.Now().UTC().Format(http.TimeFormat))))
	req := benchReq("/")
	benchOne(b, h, req)
	if s := c.Stats(); s.Misses == 0 || s.Hits != 0 {
		b.Fatalf("stats %+v: want misses only", s)
	}
}

// benchOne serves req through h again and again, counting allocations and
// CPU per request.
func benchOne(b *testing.B, h balancer.Handler, req *h1.Request) {
	w := &nullW{}
	x := &balancer.Exchange{Req: req, W: w}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		x.W = w
		h.ServeExchange(x)
	}
	reportCPU(b, start)
}
