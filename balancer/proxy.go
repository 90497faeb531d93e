package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config configures a Handler. Pool is required.
type Config struct {
	// Pool supplies the workers.
	Pool *Pool
	// App names the application in error pages.
	App string
	// Attempts is how many workers a request may try when dialing fails
	// (the request has not reached any app code yet). If zero, 3.
	Attempts int
	// Transport carries requests to workers. If nil, a Transport dialing
	// the picked worker's socket is used. (Tests may replace it.)
	Transport http.RoundTripper
	// Log receives one line per failed request. If nil, nothing is logged.
	Log *slog.Logger
}

// Handler proxies each request to the least-busy worker.
type HTTPHandler struct {
	cfg   Config
	proxy *httputil.ReverseProxy
	log   *slog.Logger
}

type ctxKey struct{}

// attempt is one try of a request against one upstream; the proxy's hooks
// fill in what happened.
type attempt struct {
	up      *Upstream
	err     error // the proxy's error, if any
	retry   bool  // the error is safe to retry on another worker
	lastTry bool
	body    *replayGuard
}

// New returns a Handler.
func New(cfg Config) (*HTTPHandler, error) {
	if cfg.Pool == nil {
		return nil, errors.New("balancer: Config.Pool is nil")
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 3
	}
	if cfg.Transport == nil {
		cfg.Transport = newTransport()
	}
	h := &HTTPHandler{cfg: cfg, log: cfg.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:       rewrite,
		Transport:     cfg.Transport,
		FlushInterval: -1, // stream: server-sent events and long polls reach the client at once
		ErrorHandler:  h.proxyError,
		ErrorLog:      slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	return h, nil
}

// newTransport dials the upstream carried in the request's context. The
// URL host is the upstream's unique id, so idle connections are pooled per
// worker and never cross to another.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			a, _ := ctx.Value(ctxKey{}).(*attempt)
			if a == nil {
				return nil, errors.New("balancer: dial without an upstream")
			}
			var d net.Dialer
			return d.DialContext(ctx, a.up.Network, a.up.Addr)
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
	}
}

func rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(ctxKey{}).(*attempt)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "w" + strconv.FormatUint(a.up.id, 10) + ".berth"
	pr.Out.Host = pr.In.Host // the app sees the host the client asked for
	setForwarded(pr)
	if a.body != nil {
		pr.Out.Body = a.body
	}
}

// setForwarded sets X-Forwarded-For/-Host/-Proto. A client on loopback or
// a Unix socket is a proxy in front of berth (nginx on the same host): its
// forwarding headers are kept and extended; anyone else's are replaced.
func setForwarded(pr *httputil.ProxyRequest) {
	pr.SetXForwarded()
	if !trustedPeer(pr.In.RemoteAddr) {
		return
	}
	in := pr.In.Header
	if prior := in.Values("X-Forwarded-For"); len(prior) > 0 {
		chain := strings.Join(prior, ", ")
		if ip := pr.Out.Header.Get("X-Forwarded-For"); ip != "" {
			chain += ", " + ip
		}
		pr.Out.Header.Set("X-Forwarded-For", chain)
	}
	for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := in.Get(k); v != "" {
			pr.Out.Header.Set(k, v)
		}
	}
}

func trustedPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return true // Unix socket peers have no host:port
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServeHTTP implements http.Handler.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var tried []*Upstream
	var guard *replayGuard
	if r.Body != nil && r.Body != http.NoBody {
		guard = &replayGuard{rc: r.Body}
	}
	for i := 1; ; i++ {
		up, err := h.cfg.Pool.Acquire(r.Context(), tried)
		if err != nil {
			h.unavailable(w, r, err, tried)
			return
		}
		a := &attempt{up: up, body: guard, lastTry: i >= h.cfg.Attempts}
		h.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, a)))
		h.cfg.Pool.Release(up)
		if !a.retry {
			return
		}
		h.log.Warn("worker refused a connection; trying another", "worker", up.Name, "err", a.err)
		tried = append(tried, up)
	}
}

// proxyError answers a request the proxy could not complete: retry when no
// byte reached the worker, 504 on timeouts, 502 otherwise.
func (h *HTTPHandler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	a := r.Context().Value(ctxKey{}).(*attempt)
	a.err = err
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		w.WriteHeader(499)
		return
	}
	if isDialError(err) && !a.lastTry && (a.body == nil || !a.body.read) {
		a.retry = true
		return
	}
	var code int
	var msg string
	switch {
	case isDialError(err):
		code, msg = http.StatusBadGateway, fmt.Sprintf("berth: app %s: worker %s refused the connection and no other worker could take the request.", h.cfg.App, a.up.Name)
	case isTimeout(err):
		code, msg = http.StatusGatewayTimeout, fmt.Sprintf("berth: app %s: worker %s did not answer in time.", h.cfg.App, a.up.Name)
	default:
		code, msg = http.StatusBadGateway, fmt.Sprintf("berth: app %s: worker %s failed while handling the request (it closed the connection, or exited). The request was not retried because the app may have acted on it.", h.cfg.App, a.up.Name)
	}
	h.log.Warn("request failed", "worker", a.up.Name, "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	textError(w, code, msg)
}

// unavailable answers a request no worker could take.
func (h *HTTPHandler) unavailable(w http.ResponseWriter, r *http.Request, err error, tried []*Upstream) {
	if r.Context().Err() != nil {
		w.WriteHeader(499)
		return
	}
	var ue *UnavailableError
	var msg string
	switch {
	case len(tried) > 0:
		code := http.StatusBadGateway
		textError(w, code, fmt.Sprintf("berth: app %s: every worker refused the connection (%d tried).", h.cfg.App, len(tried)))
		return
	case errors.As(err, &ue):
		msg = fmt.Sprintf("berth: app %s is unavailable: %s", h.cfg.App, ue.Reason)
	case errors.Is(err, ErrQueueFull):
		msg = fmt.Sprintf("berth: app %s is overloaded: the request queue is full. Try again shortly.", h.cfg.App)
	default:
		msg = fmt.Sprintf("berth: app %s has no worker ready (%v). It may still be starting.", h.cfg.App, err)
	}
	w.Header().Set("Retry-After", "1")
	textError(w, http.StatusServiceUnavailable, msg)
}

func textError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// replayGuard wraps a request body so a failed dial can be retried: it
// records whether any byte was read and ignores Close (the server closes
// the real body when the handler returns).
type replayGuard struct {
	rc   io.ReadCloser
	read bool
}

func (g *replayGuard) Read(p []byte) (int, error) {
	n, err := g.rc.Read(p)
	if n > 0 {
		g.read = true
	}
	return n, err
}

func (g *replayGuard) Close() error { return nil }
