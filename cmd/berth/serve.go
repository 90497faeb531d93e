package main

import (
	"context"
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
	"sync"
	"syscall"
	"time"

	"berth/activation"
	"berth/balancer"
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
	notifier := activation.NewNotifier(log)
	fallback := cfg.Listen
	if len(fallback) == 0 {
		fallback = []string{fmt.Sprintf(":%d", cfg.Port)}
	}
	listeners, err := activation.Listen(activation.Config{Fallback: fallback})
	if err != nil {
		return err
	}
	for _, l := range listeners {
		log.Info("listening", "addr", l.Addr().String(), "name", l.Name, "inherited", l.Inherited)
	}

	rundir, cleanup, err := makeRuntimeDir(cfg.Name)
	if err != nil {
		return err
	}
	defer cleanup()
	loaderPath := ""
	if app.Type == spawner.AppNode {
		if loaderPath, err = loader.WriteTo(rundir); err != nil {
			return err
		}
	}
	backend, closeBackend, err := chooseBackend(cfg, rundir, stderr, log)
	if err != nil {
		return err
	}
	defer closeBackend()

	pool := balancer.NewPool(balancer.PoolConfig{QueueTimeout: cfg.QueueTimeout, MaxQueue: cfg.MaxQueue})
	handler, err := balancer.New(balancer.Config{Pool: pool, App: cfg.Name, Log: log})
	if err != nil {
		return err
	}
	conns := newConnTracker()
	srv := &http.Server{
		ConnState:         conns.ConnState,
		Handler:           handler,
		ReadHeaderTimeout: 60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	ups := newUpstreams(pool)
	var readyOnce sync.Once
	status := func(st spawner.Status) string {
		s := fmt.Sprintf("%d/%d workers ready, %d queued, %d requests served", st.Ready, st.Wanted, pool.Queued(), pool.Total())
		if st.Failing != "" {
			s += "; failing: " + firstLine(st.Failing)
		}
		return s
	}
	env := append([]string(nil), cfg.Env...)
	sup, err := spawner.NewSupervisor(spawner.SupervisorConfig{
		Backend: backend,
		Spec: func(name string) spawner.Spec {
			return spawner.Spec{
				App: cfg.Name, Name: name, Dir: app.Dir, Argv: app.Argv(loaderPath), Env: env,
				PortEnv: cfg.PortEnv, Probe: app.Type == spawner.AppGeneric, StopTimeout: cfg.StopTimeout,
			}
		},
		Workers:      cfg.MinWorkers,
		SpawnTimeout: cfg.SpawnTimeout,
		OnReady:      ups.add,
		OnGone:       ups.remove,
		OnChange: func(st spawner.Status) {
			if st.Failing != "" && st.Ready == 0 {
				pool.SetUnavailable("the app fails to start: " + st.Failing)
			} else {
				pool.SetUnavailable("")
			}
			if st.Ready == st.Wanted || st.Failing != "" {
				readyOnce.Do(func() { notifier.Ready(status(st)) })
			}
			notifier.Status(status(st))
		},
		Log: log,
	})
	if err != nil {
		return err
	}

	// hurry ends when berth must stop at once (a second signal): worker
	// stops stop waiting and kill.
	hurry, hurryNow := context.WithCancel(context.Background())
	defer hurryNow()
	supCtx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	supDone := make(chan struct{})
	go func() {
		defer close(supDone)
		sup.Run(supCtx, func() context.Context { return hurry })
	}()
	var serving sync.WaitGroup
	var netListeners []net.Listener
	for _, l := range listeners {
		netListeners = append(netListeners, l)
		serving.Add(1)
		go func() {
			defer serving.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	since := time.Now()
	var listenNames []string
	for _, l := range listeners {
		listenNames = append(listenNames, l.Addr().String())
	}
	spawnerName := "systemd"
	if _, ok := backend.(*spawner.Exec); ok {
		spawnerName = "exec"
	}
	adminRestart := make(chan chan error)
	adminL, err := listenAdmin(rundir)
	if err != nil {
		return err
	}
	admin := &http.Server{Handler: adminHandler(
		func() appStatus {
			return buildStatus(cfg.Name, since, listenNames, spawnerName, sup.Status(), pool)
		},
		func(ctx context.Context) error {
			res := make(chan error, 1)
			select {
			case adminRestart <- res:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case err := <-res:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		})}
	go admin.Serve(adminL)
	defer admin.Close()

	watchdogCtx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	go notifier.Watchdog(watchdogCtx, nil)
	statusTick := time.NewTicker(5 * time.Second)
	defer statusTick.Stop()
	var scaleTick <-chan time.Time
	scaler := &spawner.Autoscaler{Min: cfg.MinWorkers, Max: cfg.MaxWorkers, IdleAfter: cfg.IdleTimeout}
	if cfg.MaxWorkers > cfg.MinWorkers {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		scaleTick = t.C
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
		notifier.Reloading()
		go func() { restarting <- sup.Restart(supCtx) }()
	}
	for {
		select {
		case <-statusTick.C:
			notifier.Status(status(sup.Status()))
			continue
		case now := <-scaleTick:
			current := sup.Status().Wanted
			if want := scaler.Observe(now, current, poolLoad(pool)); want != current {
				log.Info("scaling workers", "from", current, "to", want)
				sup.Scale(supCtx, want)
			}
			continue
		case err := <-restarting:
			busy = false
			if err != nil {
				log.Error("rolling restart failed; the old workers keep serving", "err", err)
			} else {
				log.Info("rolling restart done")
			}
			for _, w := range waiting {
				w <- err
			}
			waiting = nil
			notifier.Ready(status(sup.Status()))
			continue
		case res := <-adminRestart:
			waiting = append(waiting, res)
			if !busy {
				startRestart("berth restart")
			}
			continue
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if busy {
					log.Info("rolling restart already running; SIGHUP ignored")
				} else {
					startRestart("SIGHUP")
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String())
		}
		break
	}

	// Graceful shutdown: a second signal cuts it short.
	notifier.Stopping()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				log.Warn("second signal: stopping now", "signal", sig.String())
				hurryNow()
				return
			}
		}
	}()
	sctx, cancel := context.WithTimeout(hurry, cfg.ShutdownTimeout)
	err = drain(sctx, srv, conns, netListeners, &serving)
	cancel()
	if err != nil {
		log.Warn("requests still running at the shutdown deadline; closing them", "err", err)
		srv.Close()
	}
	stopWorkers()
	<-supDone
	stopWatchdog()
	if hurry.Err() != nil {
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
	mu   sync.Mutex // protects m
	m    map[spawner.Worker]*balancer.Upstream
}

func newUpstreams(p *balancer.Pool) *upstreams {
	return &upstreams{pool: p, m: map[spawner.Worker]*balancer.Upstream{}}
}

func (u *upstreams) add(w spawner.Worker) {
	network, addr := w.Addr()
	up := &balancer.Upstream{Name: w.Name(), Network: network, Addr: addr, Pid: w.Pid()}
	u.mu.Lock()
	u.m[w] = up
	u.mu.Unlock()
	u.pool.Add(up)
}

func (u *upstreams) remove(w spawner.Worker) {
	u.mu.Lock()
	up := u.m[w]
	delete(u.m, w)
	u.mu.Unlock()
	if up != nil {
		u.pool.Remove(up)
	}
}

// makeRuntimeDir makes the private directory (mode 0700) for the app's
// worker sockets and admin socket: $RUNTIME_DIRECTORY under systemd
// (RuntimeDirectory=berth/NAME), else appRuntimeDir(name). A directory left
// by a berth that died is taken over; one whose admin socket still answers
// belongs to a running berth, and is an error. cleanup removes what berth
// made.
func makeRuntimeDir(app string) (dir string, cleanup func(), err error) {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		return d, func() {}, nil
	}
	dir = appRuntimeDir(app)
	if c, err := net.Dial("unix", filepath.Join(dir, adminSocket)); err == nil {
		c.Close()
		return "", nil, fmt.Errorf("berth already serves an app named %s (its admin socket in %s answers): stop it, or give this one another --name", app, dir)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", nil, fmt.Errorf("runtime directory %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// appRuntimeDir is where a berth serving app keeps its sockets: under
// /run/berth for root (the same place systemd's RuntimeDirectory= gives),
// $XDG_RUNTIME_DIR/berth for a user, else the temp dir.
func appRuntimeDir(app string) string {
	if d := os.Getenv("BERTH_RUNTIME_BASE"); d != "" {
		return filepath.Join(d, app)
	}
	if os.Geteuid() == 0 {
		return filepath.Join("/run/berth", app)
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "berth", app)
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("berth-%d", os.Geteuid()), app)
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
