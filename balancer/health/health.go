// Package health tells load balancers and monitoring how a berth is: the
// status listener (--status-listen) answers /healthz (berth is alive),
// /readyz (it should get traffic) and /metrics (Prometheus); the agent
// listener (--agent-listen) answers HAProxy's agent-check with one line.
//
// Draining (berth drain, or SIGTERM) flips /readyz to 503 and the agent
// to "drain" at once, while berth keeps serving what still comes; Undrain
// reverses it.
//
// HAProxy, checking /readyz and listening to the agent:
//
//	server h1 10.0.0.1:80 send-proxy-v2 check port 9100 agent-check agent-port 9101 agent-inter 1s
//	option httpchk GET /readyz
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"berth/balancer"
)

// Config configures New. Pool is required.
type Config struct {
	// Pool is read for ready workers, their load and the queue.
	Pool *balancer.Pool
	// MaxQueue is the queue length at which /readyz fails (the pool then
	// refuses requests). If zero or negative, the queue is not checked.
	MaxQueue int
	// Gatherer is served at /metrics. If nil, /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Log receives listener problems. If nil, nothing is logged.
	Log *slog.Logger
}

// Health is one berth's health state and its listeners.
type Health struct {
	cfg      Config
	log      *slog.Logger
	draining atomic.Bool
}

// New returns a Health, not draining.
func New(cfg Config) (*Health, error) {
	if cfg.Pool == nil {
		return nil, errors.New("health: Config.Pool is nil")
	}
	h := &Health{cfg: cfg, log: cfg.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// Drain makes /readyz fail and the agent answer "drain"; it reports
// whether berth was not draining before.
func (h *Health) Drain() bool { return !h.draining.Swap(true) }

// Undrain reverses Drain; it reports whether berth was draining.
func (h *Health) Undrain() bool { return h.draining.Swap(false) }

// Draining reports whether berth drains.
func (h *Health) Draining() bool { return h.draining.Load() }

// Ready reports whether berth should get traffic, and if not, why.
func (h *Health) Ready() (bool, string) {
	if h.draining.Load() {
		return false, "draining"
	}
	if serving(h.cfg.Pool.Upstreams()) == 0 {
		return false, "no worker is ready"
	}
	if h.cfg.MaxQueue > 0 && h.cfg.Pool.Queued() >= int64(h.cfg.MaxQueue) {
		return false, "the request queue is full"
	}
	return true, ""
}

// AgentReply is the line the agent sends: "drain" while draining, "down"
// with no worker ready, else "up ready N%" where N is the share of ready
// workers not serving a request now (at least 1%): HAProxy weighs this
// host by its spare capacity. Workers held out of rotation (blocked,
// doing out-of-band work, being recycled) count as neither.
func (h *Health) AgentReply() string {
	if h.draining.Load() {
		return "drain\n"
	}
	ups := h.cfg.Pool.Upstreams()
	n := serving(ups)
	if n == 0 {
		return "down\n"
	}
	idle := 0
	for _, u := range ups {
		if u.Held() == 0 && u.Inflight() == 0 {
			idle++
		}
	}
	pct := max(1, 100*idle/n)
	return "up ready " + strconv.Itoa(pct) + "%\n"
}

// serving counts the workers in rotation.
func serving(ups []*balancer.Upstream) int {
	n := 0
	for _, u := range ups {
		if u.Held() == 0 {
			n++
		}
	}
	return n
}

// Handler serves /healthz, /readyz and /metrics.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if ok, why := h.Ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if h.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(h.cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn)}))
	}
	return mux
}

// ServeStatus answers HTTP on l until ctx ends; it closes l.
func (h *Health) ServeStatus(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("status listener %s: %w", l.Addr(), err)
}

// ServeAgent answers HAProxy's agent-check on l until ctx ends: one line
// per connection, then close. It closes l.
func (h *Health) ServeAgent(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("agent listener %s: %w", l.Addr(), err)
		}
		// One short write; the socket buffer takes it without blocking.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, h.AgentReply())
		c.Close()
	}
}

// Listen opens a status or agent listener: "host:port", ":port", or
// "unix:/path" (a stale socket file is replaced).
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		os.Remove(path)
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}
