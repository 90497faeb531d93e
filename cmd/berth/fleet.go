package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"berth/balancer"
	"berth/balancer/accesslog"
	"berth/balancer/health"
	"berth/balancer/metrics"
	"berth/balancer/proxyprotocol"
	"berth/balancer/requestid"
	"berth/balancer/trust"
)

// fleetFlags are the flags of berth in a fleet: behind a load balancer,
// watched by Prometheus.
func fleetFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.Var(&c.TrustedProxy, "trusted-proxy", "CIDR or address of a proxy in front of berth whose X-Forwarded-*, Forwarded, X-Request-ID and PROXY header are believed (repeatable; default: loopback)")
	fs.BoolVar(&c.ProxyProtocol, "proxy-protocol", false, "public listeners expect a PROXY protocol v1/v2 header from trusted proxies (required from them; refused from anyone else)")
	fs.StringVar(&c.StatusListen, "status-listen", "", "serve /healthz, /readyz and /metrics on this address: host:port or unix:/path (default off)")
	fs.StringVar(&c.AgentListen, "agent-listen", "", "answer HAProxy's agent-check on this TCP address, host:port (default off)")
	fs.BoolVar(&c.Metrics, "metrics", false, "collect Prometheus metrics (on with --status-listen; also served by `berth metrics`)")
	fs.BoolVar(&c.AccessLog, "access-log", false, "log one entry per request (journald fields BERTH_*, or logfmt on stderr)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "on SIGTERM, report draining and keep serving this long before shutting down, so the load balancer stops sending first")
}

// validateFleet checks the fleet flags.
func (c *serveConfig) validateFleet() error {
	var err error
	if c.trusted, err = trust.Parse(c.TrustedProxy); err != nil {
		return fmt.Errorf("--trusted-proxy: %w", err)
	}
	if c.DrainDelay < 0 {
		return fmt.Errorf("--drain-delay %s: want 0 or a positive duration", c.DrainDelay)
	}
	if c.StatusListen != "" {
		c.Metrics = true
	}
	return nil
}

const drainAbout = `drain tells the load balancer in front of app NAME (or of the only app
running) to stop sending it traffic: /readyz fails and the agent answers
"drain" at once, while berth keeps serving what still comes. undrain
reverses it.`

// runDrain is `berth drain [NAME]` and `berth undrain [NAME]`.
func runDrain(name string, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand(name, "berth "+name+" [NAME]", drainAbout)
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return usageExit(name, err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app, dir, err := pickApp(ctx, pos)
	if err != nil {
		return usageExit(name, err, stderr)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://berth/"+name, nil)
	resp, err := adminClient(dir).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "berth %s: %v\n", name, adminError(app, dir, err))
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintf(stderr, "berth %s: %s: %s", name, app, body)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s", app, body)
	return 0
}

const metricsAbout = `Prints the Prometheus metrics of app NAME (or of the only app running),
read over its admin socket. The app must run with --metrics or
--status-listen.`

// runMetrics is `berth metrics [NAME]`.
func runMetrics(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("metrics", "berth metrics [NAME]", metricsAbout)
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return usageExit("metrics", err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app, dir, err := pickApp(ctx, pos)
	if err != nil {
		return usageExit("metrics", err, stderr)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://berth/metrics", nil)
	resp, err := adminClient(dir).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "berth metrics: %v\n", adminError(app, dir, err))
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		fmt.Fprintf(stderr, "berth metrics: %s collects no metrics: start it with --metrics or --status-listen\n", app)
		return 1
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(stderr, "berth metrics: %s: %s", app, body)
		return 1
	}
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		fmt.Fprintf(stderr, "berth metrics: %s: %v\n", app, err)
		return 1
	}
	return 0
}

// fleet is what berth runs to be a good member of a fleet: health and
// drain state, metrics, the status and agent listeners.
type fleet struct {
	health  *health.Health
	metrics *metrics.Metrics // nil when metrics are off
	status  net.Listener     // nil without --status-listen
	agent   net.Listener     // nil without --agent-listen
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// startFleet makes the health state and metrics, and opens the status and
// agent listeners (so that a bad address fails berth's start);
// serveFleet serves them once the supervisor exists, and closeFleet
// stops them.
func (d *daemon) startFleet() error {
	cfg := d.cfg
	f := &fleet{}
	d.fleet = f
	if cfg.Metrics {
		f.metrics = metrics.New(metrics.Config{
			App:  cfg.Name,
			Pool: d.pool,
			Workers: func() map[string]int {
				st := d.sup.Status()
				return map[string]int{"wanted": st.Wanted, "ready": st.Ready, "starting": len(st.Starting)}
			},
			Recycles: func() map[string]int {
				m := d.sup.Status().RecycleKinds
				if m == nil {
					m = map[string]int{}
				}
				return m
			},
			Restarts: func() map[string]int {
				m := map[string]int{}
				for _, w := range d.sup.Status().Workers {
					m[w.Name] = w.Restarts
				}
				return m
			},
			Draining:          func() bool { return f.health.Draining() },
			ProcessCollectors: true,
		})
	}
	var g prometheus.Gatherer
	if f.metrics != nil {
		g = f.metrics.Registry()
	}
	var err error
	f.health, err = health.New(health.Config{Pool: d.pool, MaxQueue: cfg.MaxQueue, Gatherer: g, Log: d.log})
	if err != nil {
		return err
	}
	open := func(addr, what string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		l, err := health.Listen(addr)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", what, err)
		}
		d.log.Info("listening", "addr", l.Addr().String(), "for", what)
		return l, nil
	}
	if f.status, err = open(cfg.StatusListen, "status-listen"); err != nil {
		return err
	}
	f.agent, err = open(cfg.AgentListen, "agent-listen")
	return err
}

// serveFleet serves the status and agent listeners until closeFleet.
func (d *daemon) serveFleet() {
	f := d.fleet
	ctx, stop := context.WithCancel(context.Background())
	f.stop = stop
	serve := func(l net.Listener, what string, serve func(context.Context, net.Listener) error) {
		if l == nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := serve(ctx, l); err != nil {
				d.log.Error("listener failed", "for", what, "err", err)
			}
		}()
	}
	serve(f.status, "status-listen", f.health.ServeStatus)
	serve(f.agent, "agent-listen", f.health.ServeAgent)
}

// closeFleet stops the status and agent listeners (or closes them, if
// they were never served).
func (d *daemon) closeFleet() {
	f := d.fleet
	if f == nil {
		return
	}
	if f.stop == nil {
		for _, l := range []net.Listener{f.status, f.agent} {
			if l != nil {
				l.Close()
			}
		}
		return
	}
	f.stop()
	f.wg.Wait()
}

// fleetListeners wraps the public listeners for the PROXY protocol when
// asked.
func fleetListeners(cfg *serveConfig, ls []net.Listener) []net.Listener {
	if !cfg.ProxyProtocol {
		return ls
	}
	out := make([]net.Listener, len(ls))
	for i, l := range ls {
		out[i] = proxyprotocol.Listen(l, proxyprotocol.Config{Trusted: cfg.trusted})
	}
	return out
}

// fleetChain puts the fleet's links in front of next, outermost first:
// request id (always), access log and metrics (only when on).
func (d *daemon) fleetChain(next balancer.Handler) balancer.Handler {
	h := next
	if d.fleet.metrics != nil {
		h = d.fleet.metrics.Link(h)
	}
	if d.cfg.AccessLog {
		h = accesslog.New(h, d.log, d.cfg.trusted)
	}
	return requestid.New(h, d.cfg.trusted)
}

// fleetAdmin adds the fleet's endpoints to the admin API.
func (d *daemon) fleetAdmin() {
	h := d.fleet.health
	drained := "draining: /readyz fails and the agent says drain; requests are still served"
	if d.cfg.StatusListen == "" && d.cfg.AgentListen == "" {
		drained = "draining, but nothing tells a load balancer: this berth runs without --status-listen and --agent-listen"
	}
	d.admin.HandleAction("/drain", drained, func(context.Context, *http.Request) error {
		if h.Drain() {
			d.log.Info("draining", "by", "berth drain")
		}
		return nil
	})
	d.admin.HandleAction("/undrain", "not draining: /readyz and the agent report ready again", func(context.Context, *http.Request) error {
		if h.Undrain() {
			d.log.Info("drain ended", "by", "berth undrain")
		}
		return nil
	})
	if m := d.fleet.metrics; m != nil {
		d.admin.Handle("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}))
	}
}

// drainBeforeShutdown flips /readyz and the agent to drain at once, and
// keeps serving for --drain-delay so the load balancer stops sending
// before the listeners close; a second signal (hurry) cuts it short.
func (d *daemon) drainBeforeShutdown() {
	d.fleet.health.Drain()
	if d.cfg.DrainDelay <= 0 {
		return
	}
	t := time.NewTimer(d.cfg.DrainDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.hurry.Done():
	}
}
