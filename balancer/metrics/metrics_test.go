package metrics_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"berth/balancer"
	"berth/balancer/h1"
	"berth/balancer/metrics"
	"berth/balancer/requestid"
	"berth/balancer/trust"
	"berth/packaging/testenv"
)

// fakeWorker answers every request on l with resp.
func fakeWorker(l net.Listener, resp string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 {
						break
					}
				}
				if _, err := io.WriteString(c, resp); err != nil {
					return
				}
			}
		}()
	}
}

const hello = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n"

// front starts a front door before one fake worker w1, with wrap around
// the proxy, and returns its address and pool.
func front(tb testing.TB, wrap func(*balancer.Pool, balancer.Handler) balancer.Handler) (string, *balancer.Pool) {
	tb.Helper()
	p := balancer.NewPool(balancer.PoolConfig{QueueTimeout: 1e9})
	for _, name := range []string{"w1", "w2"} {
		path := tb.TempDir() + "/" + name + ".sock"
		l, err := net.Listen("unix", path)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { l.Close() })
		go fakeWorker(l, hello)
		p.Add(&balancer.Upstream{Name: name, Network: "unix", Addr: path})
	}
	px, err := balancer.NewProxy(balancer.ProxyConfig{Pool: p, App: "shop"})
	if err != nil {
		tb.Fatal(err)
	}
	var h balancer.Handler = px
	if wrap != nil {
		h = wrap(p, h)
	}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: h, Listeners: []net.Listener{fl}})
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(tb.Context())
	tb.Cleanup(func() { srv.Close() })
	return fl.Addr().String(), p
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestLinkCountsAndPromtoolAccepts(t *testing.T) {
	var m *metrics.Metrics
	addr, _ := front(t, func(p *balancer.Pool, next balancer.Handler) balancer.Handler {
		m = metrics.New(metrics.Config{App: "shop", Pool: p,
			Workers:  func() map[string]int { return map[string]int{"wanted": 2, "ready": 2} },
			Recycles: func() map[string]int { return map[string]int{"memory": 2, "max_requests": 1} },
			Restarts: func() map[string]int { return map[string]int{"w1": 1, "w2": 0} },
		})
		m.SetCache(func() metrics.CacheStats {
			return metrics.CacheStats{Hits: 7, Misses: 2, Stale: 1, Bypass: 4, Entries: 3, Bytes: 1200}
		})
		m.SetBuffer(func() metrics.BufferStats { return metrics.BufferStats{HoldFailures: 5, MemoryBytes: 262144} })
		return m.Link(next)
	})
	for range 5 {
		resp, err := http.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := http.Post("http://"+addr+"/x", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	m.CountEvent(metrics.EventSpawn)

	out := scrape(t, m)
	sum := func(prefix string) int {
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, prefix) {
				var v int
				f := strings.Fields(line)
				for _, c := range f[len(f)-1] {
					v = v*10 + int(c-'0')
				}
				n += v
			}
		}
		return n
	}
	gets := sum(`berth_requests_total{app="shop",code="2xx",method="GET",worker="w1"}`) + sum(`berth_requests_total{app="shop",code="2xx",method="GET",worker="w2"}`)
	posts := sum(`berth_requests_total{app="shop",code="2xx",method="POST",worker="w1"}`) + sum(`berth_requests_total{app="shop",code="2xx",method="POST",worker="w2"}`)
	if gets != 5 || posts != 1 {
		t.Errorf("counted %d GET and %d POST 2xx requests, want 5 and 1:\n%s", gets, posts, out)
	}
	for _, want := range []string{
		`berth_request_duration_seconds_count{app="shop"} 6`,
		`berth_request_queue_seconds_count{app="shop"} 6`,
		`berth_queue_length{app="shop"} 0`,
		`berth_workers{app="shop",state="wanted"} 2`,
		`berth_worker_events_total{app="shop",event="spawn"} 1`,
		`berth_worker_inflight{app="shop",worker="w1"} 0`,
		`berth_draining{app="shop"} 0`,
		`berth_worker_recycles_total{app="shop",reason="memory"} 2`,
		`berth_worker_recycles_total{app="shop",reason="max_requests"} 1`,
		`berth_worker_recycles_total{app="shop",reason="blocked"} 0`,
		`berth_cache_requests_total{app="shop",result="hit"} 7`,
		`berth_cache_requests_total{app="shop",result="bypass"} 4`,
		`berth_cache_entries{app="shop"} 3`,
		`berth_cache_bytes{app="shop"} 1200`,
		`berth_buffer_hold_failures_total{app="shop"} 5`,
		`berth_buffer_memory_bytes{app="shop"} 262144`,
		`berth_worker_restarts{app="shop",worker="w1"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("scrape lacks %q", want)
		}
	}

	promtool, err := exec.LookPath("promtool")
	testenv.Need(t, err == nil, "promtool not installed (Debian package prometheus)")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	var res bytes.Buffer
	cmd.Stdout, cmd.Stderr = &res, &res
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, res.String(), out)
	}
}

// fakeWriter is a ResponseWriter that reports a status, as the front
// door's does.
type fakeWriter struct{ status int }

func (w *fakeWriter) WriteHead(r *h1.Response) error { w.status = r.Status; return nil }
func (w *fakeWriter) Write(p []byte) (int, error)    { return len(p), nil }
func (w *fakeWriter) Flush() error                   { return nil }
func (w *fakeWriter) Status() int                    { return w.status }

func TestLinkDoesNotAllocate(t *testing.T) {
	p := balancer.NewPool(balancer.PoolConfig{})
	up := &balancer.Upstream{Name: "w1"}
	m := metrics.New(metrics.Config{Pool: p})
	ok := &h1.Response{Status: 200}
	l := m.Link(balancer.HandlerFunc(func(x *balancer.Exchange) {
		x.Worker = up
		x.W.WriteHead(ok)
	}))
	x := &balancer.Exchange{Req: &h1.Request{Method: []byte("GET")}, W: &fakeWriter{}}
	l.ServeExchange(x) // makes w1's series
	if n := testing.AllocsPerRun(1000, func() { l.ServeExchange(x) }); n != 0 {
		t.Errorf("the metrics link allocates %v times per request, want 0", n)
	}
}

// BenchmarkProxyHello is balancer's BenchmarkProxyHello with the metrics
// link in the chain (sub-benchmark "metrics") and without ("bare"): the
// difference is the link's cost per request.
func BenchmarkProxyHello(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap func(*balancer.Pool, balancer.Handler) balancer.Handler
	}{
		{"bare", nil},
		{"metrics", func(p *balancer.Pool, next balancer.Handler) balancer.Handler {
			return metrics.New(metrics.Config{Pool: p}).Link(next)
		}},
		{"requestid+metrics", func(p *balancer.Pool, next balancer.Handler) balancer.Handler {
			return requestid.New(metrics.New(metrics.Config{Pool: p}).Link(next), trust.List{})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr, _ := front(b, tc.wrap)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			req := []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			// CPU time of the whole process (client, berth, workers) per
			// request: steadier than wall time on a shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkLink is the link's own cost per request, away from the noise
// of sockets.
func BenchmarkLink(b *testing.B) {
	p := balancer.NewPool(balancer.PoolConfig{})
	up := &balancer.Upstream{Name: "w1"}
	m := metrics.New(metrics.Config{Pool: p})
	ok := &h1.Response{Status: 200}
	l := m.Link(balancer.HandlerFunc(func(x *balancer.Exchange) {
		x.Worker = up
		x.W.WriteHead(ok)
	}))
	x := &balancer.Exchange{Req: &h1.Request{Method: []byte("GET")}, W: &fakeWriter{}}
	b.ReportAllocs()
	for b.Loop() {
		l.ServeExchange(x)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
