package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"berth/activation"
	"berth/balancer"
	"berth/balancer/buffer"
	"berth/balancer/cache"
	"berth/balancer/certs"
	"berth/balancer/h1"
	"berth/balancer/limits"
	"berth/balancer/loop"
	"berth/balancer/metrics"
	"berth/balancer/sockio"
	"berth/balancer/static"
	"berth/spawner"
	"berth/spawner/loader"
)

// runServe is `berth serve`: it returns the process exit code.
func runServe(args []string, stderr io.Writer) int {
	cfg, err := parseServe(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "berth serve: %v\n", err)
		return 2
	}
	stopLog, err := redirectLog(cfg.LogFile)
	if err != nil {
		fmt.Fprintf(stderr, "berth serve: %v\n", err)
		return 1
	}
	defer stopLog()
	log := newLogger(stderr, cfg.LogLevel).With("app", cfg.Name)
	app := spawner.App{
		Type:        cfg.AppType,
		Dir:         cfg.AppDir,
		StartupFile: cfg.StartupFile,
		Node:        cfg.Node,
		NodeArgs:    cfg.NodeArgs,
	}
	app.Command, err = spawner.SplitCommand(cfg.Command)
	if err == nil {
		app, err = app.Resolve()
	}
	if err != nil {
		fmt.Fprintf(stderr, "berth serve: app %s: %v\n", cfg.Name, err)
		return 2
	}
	if err := serve(cfg, app, log, stderr); err != nil {
		log.Error("berth stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs berth until a signal stops it.
func serve(cfg *serveConfig, app spawner.App, log *slog.Logger, stderr io.Writer) error {
	d, err := start(cfg, app, log, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	return d.run()
}

// daemon is a running berth: what start wired together, and what run
// drives until a signal stops it.
type daemon struct {
	cfg      *serveConfig
	log      *slog.Logger
	notifier *activation.Notifier
	pool     *balancer.Pool
	front    *balancer.Server
	cache    *cache.Cache   // nil with --cache=off
	buffer   *buffer.Buffer // nil with --buffering=off
	admin    *balancer.Admin
	sup      *spawner.Supervisor
	fleet    *fleet
	certs    *certs.Store // nil without TLS

	// hurry ends when berth must stop at once (a second signal): worker
	// stops stop waiting and kill.
	hurry    context.Context
	hurryNow context.CancelFunc
	// supCtx ends when the workers must stop.
	supCtx      context.Context
	stopWorkers context.CancelFunc
	supDone     chan struct{}
	frontDone   chan error

	adminRestart chan chan error
	cleanups     []func()

	appDir        string
	inherited     bool                   // every listener came from socket activation
	restartFailed atomic.Pointer[string] // why the last rolling restart failed; nil after one succeeded
	health        *workerHealth
	healthCtx     context.Context // ends after the workers are stopped
	stopHealth    context.CancelFunc
}

// start wires berth together: the public listeners, the runtime
// directory, the spawner back end, the pool, the handler chain and the
// front door, the supervisor and the admin API; it starts serving.
func start(cfg *serveConfig, app spawner.App, log *slog.Logger, stderr io.Writer) (_ *daemon, err error) {
	started := time.Now()
	d := &daemon{cfg: cfg, log: log, notifier: activation.NewNotifier(log), adminRestart: make(chan chan error), appDir: app.Dir}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	fallback := cfg.Listen
	if len(fallback) == 0 {
		fallback = []string{fmt.Sprintf(":%d", cfg.Port)}
	}
	listeners, err := activation.Listen(activation.Config{Fallback: fallback})
	if err != nil {
		return nil, err
	}
	d.inherited = inheritedAll(listeners)
	var netListeners []net.Listener
	var listenNames []string
	for _, l := range listeners {
		log.Info("listening", "addr", l.Addr().String(), "name", l.Name, "inherited", l.Inherited)
		netListeners = append(netListeners, l.Listener)
		listenNames = append(listenNames, l.Addr().String())
	}
	// Connection limits count TCP peers, below the PROXY protocol (whose
	// header a slow client could hold back from the accept loop).
	for i := range netListeners {
		netListeners[i] = limits.Wrap(netListeners[i], limits.ListenerConfig{
			MaxConns: cfg.MaxConnections, PerIP: cfg.MaxConnectionsPerIP, Log: log,
		})
	}
	netListeners = fleetListeners(cfg, netListeners)

	rundir, cleanup, err := makeRuntimeDir(cfg.Name)
	if err != nil {
		return nil, err
	}
	d.cleanups = append(d.cleanups, cleanup)
	loaderPath := ""
	if app.Type == spawner.AppNode {
		if loaderPath, err = loader.WriteTo(rundir); err != nil {
			return nil, err
		}
	}
	backend, closeBackend, err := chooseBackend(cfg, rundir, stderr, log)
	if err != nil {
		return nil, err
	}
	d.cleanups = append(d.cleanups, closeBackend)

	d.pool = balancer.NewPool(balancer.PoolConfig{QueueTimeout: cfg.QueueTimeout, MaxQueue: cfg.MaxQueue})
	ups := newUpstreams(d.pool, cfg.StopTimeout)
	d.healthCtx, d.stopHealth = context.WithCancel(context.Background())
	d.health = newWorkerHealth(d.healthCtx, d.pool, ups, cfg.MaxBlocked, log)
	if err := d.startFleet(); err != nil {
		return nil, err
	}
	ups.metrics = d.fleet.metrics
	chain, err := d.handlerChain(cfg, d.pool, d.health, func() string {
		// Requests come only once the supervisor exists (start begins
		// serving after it is made).
		return waitingText(d.sup.Status(), cfg.FriendlyErrorPages)
	}, log)
	if err != nil {
		return nil, err
	}
	if d.cache != nil && d.fleet.metrics != nil {
		c := d.cache
		d.fleet.metrics.SetCache(func() metrics.CacheStats {
			st := c.Stats()
			return metrics.CacheStats{Hits: st.Hits, Misses: st.Misses, Stale: st.Stale, Bypass: st.Bypass, Entries: st.Entries, Bytes: st.Bytes}
		})
	}
	if d.buffer != nil && d.fleet.metrics != nil {
		b := d.buffer
		d.fleet.metrics.SetBuffer(func() metrics.BufferStats {
			st := b.Stats()
			return metrics.BufferStats{HoldFailures: st.HoldFailures, MemoryBytes: st.MemoryBytes}
		})
	}
	chain = d.fleetChain(chain)
	tlsOn, err := d.wrapTLS(listeners, netListeners)
	if err != nil {
		return nil, err
	}
	var loops []*loop.Loop
	if cfg.Engine == "loop" {
		// One loop per processor Go would use; the loop package adds
		// one processor for the rest of berth (a loop holds its own
		// while it waits).
		n := runtime.GOMAXPROCS(0)
		for range n {
			lp, err := loop.New(loop.Config{})
			if err != nil {
				return nil, err
			}
			loops = append(loops, lp)
			d.cleanups = append(d.cleanups, func() { lp.Close() })
		}
		if err := loops[0].NoRing(); err != nil {
			log.Info("event loops", "loops", n, "batching", false, "err", err,
				"hint", "each send is a system call of its own: allow io_uring_setup and io_uring_enter (systemd's SystemCallFilter=, sysctl kernel.io_uring_disabled) to batch them")
		} else {
			log.Info("event loops", "loops", n, "batching", loops[0].Batching())
		}
	}
	d.front, err = balancer.NewServer(balancer.ServerConfig{
		Handler: chain, Listeners: netListeners, TLS: tlsOn, HTTP2: cfg.HTTP2 == "on", Log: log, Loops: loops,
		Limits:        h1.Limits{MaxHeaderBytes: cfg.MaxHeaderBytes, MaxRequestLine: cfg.MaxRequestLine},
		HeaderTimeout: cfg.HeaderTimeout, IdleTimeout: cfg.KeepaliveTimeout, BodyTimeout: cfg.ClientTimeout,
	})
	if err != nil {
		return nil, err
	}

	var readyOnce sync.Once
	env := append([]string(nil), cfg.Env...)
	memoryLimit, _ := parseBytes(cfg.MemoryLimit) // checked by validate
	d.sup, err = spawner.NewSupervisor(spawner.SupervisorConfig{
		Backend: backend,
		Spec: func(name string) spawner.Spec {
			return spawner.Spec{
				App: cfg.Name, Name: name, Dir: app.Dir, Argv: app.Argv(loaderPath), Env: env,
				PortEnv: cfg.PortEnv, Probe: app.Type == spawner.AppGeneric, StopTimeout: cfg.StopTimeout,
			}
		},
		Workers:      cfg.MinWorkers,
		SpawnTimeout: cfg.SpawnTimeout,
		Served:       ups.served,
		MaxRequests:  cfg.MaxRequests,
		MemoryLimit:  memoryLimit,
		OnReady:      ups.add,
		OnGone:       ups.remove,
		OnStartFailed: func(string, error) {
			if ups.metrics != nil {
				ups.metrics.CountEvent(metrics.EventSpawnFailure)
			}
		},
		OnChange: func(st spawner.Status) {
			d.pool.SetUnavailable(unavailableText(st, cfg.FriendlyErrorPages))
			if st.Ready == st.Wanted || st.Failing != "" {
				readyOnce.Do(func() { d.notifier.Ready(d.status(st)); logServing(log, cfg.Name, listeners, st, started) })
			}
			d.notifier.Status(d.status(st))
		},
		Log: log,
	})
	if err != nil {
		return nil, err
	}
	d.health.sup = d.sup

	d.hurry, d.hurryNow = context.WithCancel(context.Background())
	d.supCtx, d.stopWorkers = context.WithCancel(context.Background())
	d.supDone = make(chan struct{})
	go func() {
		defer close(d.supDone)
		d.sup.Run(d.supCtx, func() context.Context { return d.hurry })
	}()
	d.frontDone = make(chan error, 1)
	go func() { d.frontDone <- d.front.Serve(context.Background()) }()

	since := time.Now()
	spawnerName := "systemd"
	if _, ok := backend.(*spawner.Exec); ok {
		spawnerName = "exec"
	}
	d.admin, err = balancer.ListenAdmin(filepath.Join(rundir, adminSocket), log)
	if err != nil {
		return nil, err
	}
	d.admin.HandleJSON("/status", func() any {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s := buildStatus(cfg.Name, since, listenNames, spawnerName, d.sup.StatusWithUsage(ctx), d.pool)
		s.Cache = statusOfCache(d.cache, cfg.cacheBytes)
		return s
	})
	d.admin.Handle("POST /cache/purge", handlePurge(d.cache))
	d.admin.HandleAction("/restart", "restarted", func(ctx context.Context, _ *http.Request) error {
		return d.requestRestart(ctx)
	})
	d.fleetAdmin()
	d.serveFleet()
	go d.admin.Serve()
	return d, nil
}

// handlerChain builds the links every request passes, ending in the proxy.
// Outermost first: the body size limit, static files, the response cache
// (a hit takes no worker and no place in the queue), buffering, the proxy;
// the fleet's links (request id, access log, metrics) wrap all of it in
// start. What a link must release when berth stops goes to d.cleanups.
func (d *daemon) handlerChain(cfg *serveConfig, pool *balancer.Pool, health *workerHealth, explain func() string, log *slog.Logger) (balancer.Handler, error) {
	pc := balancer.ProxyConfig{Pool: pool, App: cfg.Name, Log: log, Explain: explain,
		MaxRequestTime: cfg.MaxRequestTime, OnTimeout: health.onTimeout, OnOOB: health.onOOB, Trusted: cfg.trusted}
	if cfg.StickySessions {
		pc.StickyCookie = cfg.StickyCookie
	}
	proxy, err := balancer.NewProxy(pc)
	if err != nil {
		return nil, err
	}
	var chain balancer.Handler = proxy
	if cfg.Buffering == "on" {
		if d.buffer, err = bufferLink(cfg, chain, log); err != nil {
			return nil, err
		}
		chain = d.buffer
	}
	if d.cache, err = newCache(cfg, pool, log); err != nil {
		return nil, err
	}
	if d.cache != nil {
		chain = d.cache.Wrap(chain)
		// Normally closed in run, once no request can start a refresh.
		d.cleanups = append(d.cleanups, func() { d.cache.Close() })
	}
	if chain, err = staticLink(cfg, chain, log, &d.cleanups); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes > 0 {
		if chain, err = limits.NewBody(limits.BodyConfig{Max: cfg.MaxBodyBytes, Next: chain}); err != nil {
			return nil, err
		}
	}
	return chain, nil
}

// bufferLink puts the buffering link in front of next. What it holds past
// its memory share goes to unlinked files in --buffer-dir, by default
// $TMPDIR, else /var/tmp: a disk (under berth init's unit, PrivateTmp=yes
// makes it the service's own), not the runtime directory, whose /run is a
// small memory file system that the rest of the system needs too. A
// temporary file is made there once now, so that a directory berth cannot
// write to is an error at start rather than a warning under load.
func bufferLink(cfg *serveConfig, next balancer.Handler, log *slog.Logger) (*buffer.Buffer, error) {
	dir := cfg.BufferDir
	if dir == "" {
		if dir = os.Getenv("TMPDIR"); !filepath.IsAbs(dir) {
			dir = "/var/tmp"
		}
	}
	f, err := os.CreateTemp(dir, ".berth-check-*")
	if err != nil {
		return nil, fmt.Errorf("buffer directory %s: %w (berth holds large request and response bodies there: make it, choose another with --buffer-dir, or turn buffering off with --buffering=off)", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return buffer.New(buffer.Config{Next: next, Dir: dir, StreamPaths: cfg.StreamPaths, Log: log})
}

// staticLink puts the static-file link in front of next, unless
// --static=off or the default directory (public/) does not exist. A
// relative directory is opened through the app directory's os.Root: berth
// may run as root, and the app's owner must not make it serve files from
// outside the app (public -> /etc). An absolute --static-dir can only come
// from the command line (validate). A --static-dir that does not exist is
// an error.
func staticLink(cfg *serveConfig, next balancer.Handler, log *slog.Logger, cleanups *[]func()) (balancer.Handler, error) {
	if cfg.Static == "off" {
		return next, nil
	}
	dir := cfg.StaticDir
	if dir == "" {
		dir = "public"
	}
	var root *os.Root
	var err error
	if filepath.IsAbs(dir) {
		root, err = os.OpenRoot(dir)
	} else {
		var app *os.Root
		if app, err = os.OpenRoot(cfg.AppDir); err == nil {
			root, err = app.OpenRoot(dir)
			app.Close()
		}
		dir = filepath.Join(cfg.AppDir, dir)
	}
	switch {
	case err != nil && cfg.StaticDir == "" && errors.Is(err, os.ErrNotExist):
		log.Debug("no static files directory", "dir", dir)
		return next, nil
	case err != nil:
		return nil, fmt.Errorf("static files directory %s: %w (it must be a directory inside the app directory; or --static=off)", dir, err)
	}
	files, err := static.New(static.Config{Root: root, Next: next, MaxAge: cfg.StaticMaxAge, Log: log})
	if err != nil {
		root.Close()
		return nil, err
	}
	*cleanups = append(*cleanups, func() { files.Close() })
	log.Info("serving static files", "dir", dir)
	return files, nil
}

// wrapTLS turns the public listeners into TLS listeners when
// certificates are given (--tls-cert): every listener, except an
// inherited socket named "http" (FileDescriptorName=http), which stays
// cleartext. It reports which listeners are TLS.
func (d *daemon) wrapTLS(ls []activation.Listener, nls []net.Listener) ([]bool, error) {
	cfg := d.cfg
	if len(cfg.TLSCert) == 0 {
		return nil, nil
	}
	credDir := os.Getenv("CREDENTIALS_DIRECTORY")
	pairs := make([]certs.Pair, len(cfg.TLSCert))
	for i := range cfg.TLSCert {
		pairs[i] = certs.Pair{Cert: certs.Resolve(cfg.TLSCert[i], credDir), Key: certs.Resolve(cfg.TLSKey[i], credDir)}
	}
	store, err := certs.New(pairs)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	d.certs = store
	tlsCfg := store.Config(cfg.HTTP2 == "on")
	on := make([]bool, len(nls))
	for i := range nls {
		if ls[i].Inherited && ls[i].Name == "http" {
			continue
		}
		on[i] = true
		nls[i] = tls.NewListener(sockio.Listener(nls[i]), tlsCfg) // TLS reads and writes the socket through sockio
		d.log.Info("TLS on listener", "addr", nls[i].Addr().String(), "http2", cfg.HTTP2 == "on")
	}
	return on, nil
}

// reloadCerts reads the TLS certificates again (SIGHUP); on error the
// ones in use stay.
func (d *daemon) reloadCerts() {
	if d.certs == nil {
		return
	}
	if err := d.certs.Reload(); err != nil {
		d.log.Error("TLS certificates not reloaded; the previous ones stay in use", "err", err)
		return
	}
	d.log.Info("TLS certificates reloaded")
}

// requestRestart asks run for a rolling restart and waits for its end.
func (d *daemon) requestRestart(ctx context.Context) error {
	res := make(chan error, 1)
	select {
	case d.adminRestart <- res:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *daemon) status(st spawner.Status) string {
	s := fmt.Sprintf("%d/%d workers ready, %d queued, %d requests served", st.Ready, st.Wanted, d.pool.Queued(), d.pool.Total())
	if st.Failing != "" {
		s += "; failing: " + firstLine(st.Failing)
	}
	if why := d.restartFailed.Load(); why != nil {
		s += "; last restart failed, old workers serve: " + firstLine(*why)
	}
	return s
}

// close releases what start made, in reverse order; after run, only the
// admin API and the runtime directory are left.
func (d *daemon) close() {
	if d.admin != nil {
		d.admin.Close()
	}
	if d.front != nil {
		d.front.Close()
	}
	d.closeFleet()
	if d.supDone != nil {
		d.stopWorkers()
		<-d.supDone
	}
	if d.health != nil {
		d.stopHealth()
		d.health.wait()
	}
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}

// run is berth's life after start: status and scaling ticks, rolling
// restarts (SIGHUP, berth restart), and the shutdown a signal asks for.
func (d *daemon) run() error {
	cfg, log, sup := d.cfg, d.log, d.sup
	watchdogCtx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	go d.notifier.Watchdog(watchdogCtx, nil)
	statusTick := time.NewTicker(5 * time.Second)
	defer statusTick.Stop()
	var scaleTick <-chan time.Time
	scaler := &spawner.Autoscaler{Min: cfg.MinWorkers, Max: cfg.MaxWorkers, IdleAfter: cfg.IdleTimeout}
	if cfg.MaxWorkers > cfg.MinWorkers {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		scaleTick = t.C
	}

	// touch APP/tmp/restart.txt (Passenger's convention) starts a rolling
	// restart: its mtime is polled every second.
	restartFile := filepath.Join(d.appDir, "tmp", "restart.txt")
	restartMtime := fileMtime(restartFile)
	restartFileTick := time.NewTicker(time.Second)
	defer restartFileTick.Stop()
	// --exit-idle-time: under socket activation berth exits once nothing
	// came for that long; systemd holds the socket and starts it again.
	var blockTick <-chan time.Time // heartbeats checked against --max-blocked
	if cfg.MaxBlocked > 0 {
		t := time.NewTicker(min(cfg.MaxBlocked/4, 250*time.Millisecond))
		defer t.Stop()
		blockTick = t.C
	}
	var idleTick <-chan time.Time
	idle := &idleWatch{after: cfg.ExitIdleTime}
	if cfg.ExitIdleTime > 0 {
		if d.inherited {
			t := time.NewTicker(min(cfg.ExitIdleTime/4, time.Second))
			defer t.Stop()
			idleTick = t.C
		} else {
			log.Warn("--exit-idle-time needs socket activation (systemd holding the socket, see berth init); berth keeps running")
		}
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	restarting := make(chan error, 1)
	var waiting []chan error // admin requests waiting for the running restart
	busy := false
	startRestart := func(why string) {
		busy = true
		log.Info("rolling restart", "by", why)
		d.notifier.Reloading()
		go func() { restarting <- sup.Restart(d.supCtx) }()
	}
loop:
	for {
		select {
		case <-statusTick.C:
			d.notifier.Status(d.status(sup.Status()))
		case <-restartFileTick.C:
			// A touch during a running restart is looked at once that
			// restart ends: the release may have changed after it began.
			if m := fileMtime(restartFile); !busy && !m.Equal(restartMtime) {
				restartMtime = m
				if !m.IsZero() {
					startRestart("tmp/restart.txt")
				}
			}
		case now := <-blockTick:
			d.health.checkBlocked(now)
		case now := <-idleTick:
			if idle.idle(now, d.pool.Total(), poolLoad(d.pool), busy) {
				log.Info("exiting: no request came", "idle", cfg.ExitIdleTime.String())
				break loop
			}
		case now := <-scaleTick:
			current := sup.Status().Wanted
			if want := scaler.Observe(now, current, poolLoad(d.pool)); want != current {
				log.Info("scaling workers", "from", current, "to", want)
				sup.Scale(d.supCtx, want)
			}
		case err := <-restarting:
			busy = false
			if err != nil {
				log.Error("rolling restart failed; the old workers keep serving", "err", err)
				why := err.Error()
				d.restartFailed.Store(&why)
			} else {
				log.Info("rolling restart done")
				d.restartFailed.Store(nil)
			}
			for _, w := range waiting {
				w <- err
			}
			waiting = nil
			d.notifier.Ready(d.status(sup.Status()))
		case res := <-d.adminRestart:
			waiting = append(waiting, res)
			if !busy {
				startRestart("berth restart")
			}
		case err := <-d.frontDone:
			log.Error("public listener failed; shutting down", "err", err)
			break loop
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reloadCerts()
				if busy {
					log.Info("rolling restart already running; SIGHUP ignored")
				} else {
					startRestart("SIGHUP")
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String(), "drain_delay", cfg.DrainDelay.String())
			break loop
		}
	}

	// Graceful shutdown: a second signal cuts it short.
	d.notifier.Stopping()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				log.Warn("second signal: stopping now", "signal", sig.String())
				d.hurryNow()
				return
			}
		}
	}()
	d.drainBeforeShutdown()
	sctx, cancel := context.WithTimeout(d.hurry, cfg.ShutdownTimeout)
	err := d.front.Shutdown(sctx)
	cancel()
	if err != nil {
		log.Warn("requests still running at the shutdown deadline; closing them", "err", err)
	}
	d.front.Close()
	if d.cache != nil {
		d.cache.Close() // its background refreshes end before the workers
	}
	d.stopWorkers()
	<-d.supDone
	stopWatchdog()
	if d.hurry.Err() != nil {
		return errors.New("stopped at once by a second signal")
	}
	log.Info("stopped")
	return nil
}

// poolLoad is the balancer's load as the autoscaler wants it.
func poolLoad(p *balancer.Pool) spawner.Load {
	ups := p.Upstreams()
	l := spawner.Load{Ready: len(ups), Queued: int(p.Queued())}
	for _, u := range ups {
		l.Inflight += int(u.Inflight())
	}
	return l
}

// upstreams maps the spawner's workers to the balancer's upstreams.
type upstreams struct {
	pool *balancer.Pool
	// drain bounds how long a worker leaving service is waited for.
	drain   time.Duration
	metrics *metrics.Metrics // nil when metrics are off
	mu      sync.Mutex       // protects m
	m       map[spawner.Worker]*balancer.Upstream
}

func newUpstreams(p *balancer.Pool, drain time.Duration) *upstreams {
	return &upstreams{pool: p, drain: drain, m: map[spawner.Worker]*balancer.Upstream{}}
}

func (u *upstreams) add(w spawner.Worker) {
	network, addr := w.Addr()
	up := &balancer.Upstream{Name: w.Name(), Network: network, Addr: addr, Pid: w.Pid()}
	u.mu.Lock()
	u.m[w] = up
	u.mu.Unlock()
	u.pool.Add(up)
	if u.metrics != nil {
		u.metrics.CountEvent(metrics.EventSpawn)
	}
}

func (u *upstreams) remove(w spawner.Worker) {
	u.mu.Lock()
	up := u.m[w]
	delete(u.m, w)
	u.mu.Unlock()
	if up != nil {
		// The supervisor stops the worker after this returns: no request
		// of berth's may be on it then.
		ctx, cancel := context.WithTimeout(context.Background(), u.drain)
		defer cancel()
		u.pool.Drain(ctx, up)
		if u.metrics != nil {
			u.metrics.CountEvent(metrics.EventExit)
			u.metrics.Forget(up)
		}
	}
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
