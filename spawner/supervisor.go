package spawner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// SupervisorConfig configures a Supervisor. Backend, Spec and Workers are
// required.
type SupervisorConfig struct {
	// Backend starts the workers.
	Backend Backend
	// Spec returns the spec of the worker with the given name ("w1", ...).
	Spec func(name string) Spec
	// Workers is how many workers to keep running at first (0 or more;
	// see Scale).
	Workers int
	// SpawnTimeout bounds a worker's start. If zero, DefaultSpawnTimeout.
	SpawnTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait before starting a worker
	// again after it failed before it was ready (or exited having served
	// nothing); the wait doubles with every failure in a row. If zero,
	// 500ms and 30s. A worker that served requests and exits is replaced
	// at once: one crashing request is no crash loop.
	BackoffMin, BackoffMax time.Duration
	// Stable is how long a worker must run before its exit counts as no
	// failure even though it served nothing. If zero, 10s.
	Stable time.Duration
	// Served returns how many requests the balancer gave worker w. If nil,
	// every ready worker counts as having served.
	Served func(w Worker) uint64
	// MaxRequests recycles a worker (a rolling restart of that worker)
	// once it served this many requests, less a random part of up to a
	// tenth drawn per worker, so that workers do not recycle together.
	// Zero means no limit; it needs Served.
	MaxRequests uint64
	// MemoryLimit recycles a worker whose memory (Worker.Usage) is over
	// this many bytes. Zero means no limit.
	MemoryLimit uint64
	// CheckEvery is how often each worker is checked against MaxRequests
	// and MemoryLimit. If zero, 1s.
	CheckEvery time.Duration
	// OnReady is called when a worker is ready to take requests.
	OnReady func(Worker)
	// OnGone is called when a worker stops taking requests: it exited, or
	// is about to be stopped. Called once per worker passed to OnReady.
	OnGone func(Worker)
	// OnChange is called whenever the Status changes.
	OnChange func(Status)
	// OnStartFailed, if not nil, is called for every start of a worker
	// that failed (before it was ready), with its error.
	OnStartFailed func(name string, err error)
	// Log receives the supervisor's messages. If nil, nothing is logged.
	Log *slog.Logger
}

// DefaultSpawnTimeout bounds a worker's start.
const DefaultSpawnTimeout = 60 * time.Second

// A start that takes long is logged after startWarnAfter, then every
// startWarnEvery, quoting the app's last output.
const (
	startWarnAfter = 10 * time.Second
	startWarnEvery = 15 * time.Second
)

// Status is a snapshot of the supervised workers.
type Status struct {
	// Wanted is the number of workers the supervisor keeps.
	Wanted int
	// Ready is the number of workers taking requests.
	Ready int
	// Failing is non-empty while workers fail to start: the last error,
	// with the app's output (for operators only).
	Failing string
	// SpawnTimeout is how long a start may take.
	SpawnTimeout time.Duration
	// Recycles counts the workers replaced for a limit (MaxRequests,
	// MemoryLimit) since berth started.
	Recycles int
	// RecycleKinds counts the same by kind (RecycleKind of the reason).
	RecycleKinds map[string]int
	// Workers lists the ready workers.
	Workers []WorkerStatus
	// Starting lists the workers being started.
	Starting []StartingStatus
}

// WorkerStatus describes one ready worker.
type WorkerStatus struct {
	Name     string
	Pid      int
	Since    time.Time
	Restarts int
	// Recycles counts this slot's workers replaced for a limit, and
	// LastRecycle says why the last one was ("" if none was).
	Recycles    int
	LastRecycle string
	// Usage is what the worker uses: only in StatusWithUsage, and zero
	// when it could not be measured.
	Usage Usage
}

// StartingStatus describes a worker being started.
type StartingStatus struct {
	Name string
	// Pid is the worker's process, 0 until it runs.
	Pid   int
	Since time.Time
	// Waiting says what the start waits for: "is being started", "has not
	// called listen() yet", "has not reported READY=1 nor answered on its
	// socket yet".
	Waiting string
	// Output is the app's last output lines (for operators only); only in
	// StatusWithUsage.
	Output []string
}

// Unavailable explains why no worker takes requests at now: public is
// fit for any visitor (no app output, no path), detail is for operators
// (the log, berth status, --friendly-error-pages). Both are empty while a
// worker is ready.
func (st Status) Unavailable(now time.Time) (public, detail string) {
	if st.Ready > 0 {
		return "", ""
	}
	var parts, details []string
	for _, s := range st.Starting {
		p := fmt.Sprintf("worker %s has run for %s and %s; spawn timeout %s", s.Name, roundSecond(now.Sub(s.Since)), s.Waiting, roundSecond(st.SpawnTimeout))
		if s.Pid == 0 {
			p = fmt.Sprintf("worker %s is being started (for %s; spawn timeout %s)", s.Name, roundSecond(now.Sub(s.Since)), roundSecond(st.SpawnTimeout))
		}
		parts = append(parts, p)
		details = append(details, p+quoteTail(s.Output))
	}
	if st.Failing != "" {
		parts = append([]string{"the app fails to start"}, parts...)
		details = append([]string{"the app fails to start: " + st.Failing}, details...)
	}
	if len(parts) == 0 {
		return "", ""
	}
	return strings.Join(parts, "; "), strings.Join(details, "\n")
}

// roundSecond prints d in whole seconds ("12s"), or milliseconds under one.
func roundSecond(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Supervisor keeps workers running. Create it with NewSupervisor, run it
// with Run.
type Supervisor struct {
	cfg SupervisorConfig
	log *slog.Logger

	mu       sync.Mutex // protects slots, failing, named, recycles and the slots' fields but replace, cancel, done
	slots    []*slot
	failing  string
	named    int // slots ever made: names are never reused
	recycles int
	// recycleKinds counts recycles by RecycleKind.
	recycleKinds map[string]int

	restartReq chan chan error
	scaleReq   chan int
	bg         sync.WaitGroup // stops of replaced workers; Run waits for them
}

type slot struct {
	name        string
	worker      Worker // nil while not ready
	since       time.Time
	restarts    int
	recycles    int
	lastRecycle string
	starting    *starting       // the start in progress, or nil
	replace     chan replaceReq // a rolling restart or a recycle asks this slot to replace its worker
	cancel      context.CancelFunc
	done        chan struct{} // closed when the slot's goroutine returns
}

// replaceReq asks a slot to replace its worker: why is the recycle reason
// ("" for a restart); res gets the outcome.
type replaceReq struct {
	why string
	res chan error
}

// starting is a start in progress.
type starting struct {
	since  time.Time
	probe  bool
	pid    int             // 0 until the process runs
	output func() []string // nil until the process runs
}

func (st *starting) waiting() string {
	switch {
	case st.pid == 0:
		return "is being started"
	case st.probe:
		return "has not reported READY=1 nor answered on its socket yet"
	default:
		return "has not called listen() yet"
	}
}

// NewSupervisor checks cfg and fills its defaults.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Backend == nil || cfg.Spec == nil {
		return nil, errors.New("spawner: supervisor needs a Backend and a Spec")
	}
	if cfg.Workers < 0 {
		return nil, fmt.Errorf("spawner: want 0 workers or more, not %d", cfg.Workers)
	}
	if cfg.MaxRequests > 0 && cfg.Served == nil {
		return nil, errors.New("spawner: MaxRequests needs Served")
	}
	if cfg.SpawnTimeout == 0 {
		cfg.SpawnTimeout = DefaultSpawnTimeout
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 500 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.Stable == 0 {
		cfg.Stable = 10 * time.Second
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = time.Second
	}
	for _, f := range []*func(Worker){&cfg.OnReady, &cfg.OnGone} {
		if *f == nil {
			*f = func(Worker) {}
		}
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(Status) {}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{cfg: cfg, log: log, restartReq: make(chan chan error), scaleReq: make(chan int)}
	for i := 0; i < cfg.Workers; i++ {
		s.slots = append(s.slots, s.newSlotLocked())
	}
	return s, nil
}

// newSlotLocked makes a slot with a name never used before, so that a new
// worker never collides with one still stopping (a unit name, a socket).
func (s *Supervisor) newSlotLocked() *slot {
	s.named++
	return &slot{name: fmt.Sprintf("w%d", s.named), replace: make(chan replaceReq), done: make(chan struct{})}
}

// Status returns a snapshot of the workers (without Usage: it is cheap).
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

// StatusWithUsage is Status with each ready worker's Usage measured now
// (a D-Bus call or a scan of /proc per worker) and each starting worker's
// last Output (under systemd, from the journal); ctx bounds them.
func (s *Supervisor) StatusWithUsage(ctx context.Context) Status {
	s.mu.Lock()
	st := s.statusLocked()
	workers := map[string]Worker{}
	outputs := map[string]func() []string{}
	for _, sl := range s.slots {
		if sl.worker != nil {
			workers[sl.name] = sl.worker
		} else if sl.starting != nil && sl.starting.output != nil {
			outputs[sl.name] = sl.starting.output
		}
	}
	s.mu.Unlock()
	for i := range st.Starting {
		if out := outputs[st.Starting[i].Name]; out != nil {
			st.Starting[i].Output = out()
		}
	}
	for i := range st.Workers {
		if w := workers[st.Workers[i].Name]; w != nil {
			st.Workers[i].Usage, _ = w.Usage(ctx)
		}
	}
	return st
}

func (s *Supervisor) statusLocked() Status {
	st := Status{Wanted: len(s.slots), Failing: s.failing, SpawnTimeout: s.cfg.SpawnTimeout, Recycles: s.recycles,
		RecycleKinds: maps.Clone(s.recycleKinds)}
	for _, sl := range s.slots {
		if sl.worker != nil {
			st.Ready++
			st.Workers = append(st.Workers, WorkerStatus{Name: sl.name, Pid: sl.worker.Pid(), Since: sl.since,
				Restarts: sl.restarts, Recycles: sl.recycles, LastRecycle: sl.lastRecycle})
		}
		if sp := sl.starting; sp != nil && sl.worker == nil {
			st.Starting = append(st.Starting, StartingStatus{Name: sl.name, Pid: sp.pid, Since: sp.since, Waiting: sp.waiting()})
		}
	}
	return st
}

// update runs f with the lock held and reports the new status.
func (s *Supervisor) update(f func()) {
	s.mu.Lock()
	f()
	st := s.statusLocked()
	s.mu.Unlock()
	s.cfg.OnChange(st)
}

// Run starts the workers and keeps them running until ctx ends; then it
// stops them all (each within its stop timeout, or until stopCtx() ends),
// releases their names and returns.
func (s *Supervisor) Run(ctx context.Context, stopCtx func() context.Context) {
	var wg sync.WaitGroup
	launch := func(sl *slot) {
		sctx, cancel := context.WithCancel(ctx)
		sl.cancel = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(sl.done)
			s.runSlot(sctx, sl, stopCtx)
		}()
	}
	s.mu.Lock()
	for _, sl := range s.slots {
		launch(sl)
	}
	s.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.serveRestarts(ctx)
	}()
	defer s.bg.Wait()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case n := <-s.scaleReq:
			s.update(func() {
				for len(s.slots) < n {
					sl := s.newSlotLocked()
					s.slots = append(s.slots, sl)
					launch(sl)
				}
				for len(s.slots) > n {
					sl := s.slots[len(s.slots)-1]
					s.slots = s.slots[:len(s.slots)-1]
					sl.cancel() // the slot takes its worker out, stops it and releases its name
				}
			})
		}
	}
}

// Scale sets how many workers to keep (0 or more). Workers are added by
// starting new ones and removed newest first, each draining gracefully.
func (s *Supervisor) Scale(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("spawner: want 0 workers or more, not %d", n)
	}
	select {
	case s.scaleReq <- n:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart replaces the workers one at a time: each new worker is ready
// before the old one stops taking requests, so no request fails. It
// returns when all are replaced, or the first error (the remaining workers
// keep running).
func (s *Supervisor) Restart(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.restartReq <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Recycle replaces the worker named name like a rolling restart of that
// one worker (the new one ready first; the old one then gets SIGTERM, and
// SIGKILL after its stop timeout), counting why as a recycle. It returns
// once it is replaced, or the error (the old worker keeps serving).
func (s *Supervisor) Recycle(ctx context.Context, name, why string) error {
	s.mu.Lock()
	var sl *slot
	for _, x := range s.slots {
		if x.name == name {
			sl = x
		}
	}
	s.mu.Unlock()
	if sl == nil {
		return fmt.Errorf("spawner: no worker named %s", name)
	}
	res := make(chan error, 1)
	select {
	case sl.replace <- replaceReq{why: why, res: res}:
	case <-sl.done:
		return fmt.Errorf("spawner: worker %s is gone", name)
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

// serveRestarts runs rolling restarts one at a time.
func (s *Supervisor) serveRestarts(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case done := <-s.restartReq:
			done <- s.rollingRestart(ctx)
		}
	}
}

func (s *Supervisor) rollingRestart(ctx context.Context) error {
	s.mu.Lock()
	slots := append([]*slot(nil), s.slots...)
	s.mu.Unlock()
	for _, sl := range slots {
		res := make(chan error, 1)
		select {
		case sl.replace <- replaceReq{res: res}:
		case <-sl.done: // scaled away meanwhile
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-res:
			if err != nil {
				return fmt.Errorf("restart worker %s: %w", sl.name, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// runSlot keeps one worker running: the lifecycle of one slot is this one
// goroutine. When ctx ends it stops the worker and releases the name.
func (s *Supervisor) runSlot(ctx context.Context, sl *slot, stopCtx func() context.Context) {
	defer func() {
		if err := s.cfg.Backend.Release(stopCtx(), sl.name); err != nil {
			s.log.Warn("release worker name", "worker", sl.name, "err", err)
		}
	}()
	failures := 0          // failures in a row: starts, and exits of workers that served nothing
	var pending chan error // a replace request waiting for a start
	wasReady := false
	var check <-chan time.Time // ticks the limit checks
	if s.cfg.MaxRequests > 0 || s.cfg.MemoryLimit > 0 {
		t := time.NewTicker(s.cfg.CheckEvery)
		defer t.Stop()
		check = t.C
	}
	for ctx.Err() == nil {
		w, err := s.start(ctx, sl)
		if err != nil {
			if ctx.Err() != nil {
				s.update(func() { sl.starting = nil })
				break
			}
			failures++
			wait := backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, failures)
			s.log.Error("worker failed to start", "worker", sl.name, "attempt", failures, "retry_in", wait.String(), "err", err)
			if s.cfg.OnStartFailed != nil {
				s.cfg.OnStartFailed(sl.name, err)
			}
			s.update(func() { s.failing = err.Error(); sl.starting = nil })
			if pending != nil {
				pending <- err
			}
			var ok bool
			if ok, pending = s.pause(ctx, sl, wait); !ok {
				break
			}
			continue
		}
		if pending != nil {
			pending <- nil
			pending = nil
		}
		// In service first: whoever reads the status or the log line
		// after this finds the worker taking requests.
		s.cfg.OnReady(w)
		s.update(func() {
			sl.worker, sl.since, sl.starting = w, time.Now(), nil
			if wasReady || failures > 0 {
				sl.restarts++
			}
			s.failing = ""
		})
		wasReady = true
		s.log.Info("worker ready", workerAttrs(sl.name, w)...)

		// Serve until the worker dies, is replaced, or berth stops.
		limit := s.requestLimit()
		var recycleFails int
		var recycleAfter time.Time // no recycle before, after a failed one
		for w != nil {
			select {
			case <-w.Done():
				served := s.served(w)
				s.takeOut(sl, w)
				up := time.Since(sl.since)
				s.log.Warn("worker exited", append(workerAttrs(sl.name, w), "uptime", up.Round(time.Millisecond).String(), "served", served, "err", w.Err())...)
				w = nil
				if served > 0 || up >= s.cfg.Stable {
					// It was serving: replace it at once.
					failures = 0
					break
				}
				failures++
				var ok bool
				if ok, pending = s.pause(ctx, sl, backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, failures)); !ok {
					return
				}
			case req := <-sl.replace:
				if req.why != "" {
					s.log.Info("recycling worker", append(workerAttrs(sl.name, w), "reason", req.why)...)
				}
				nw, err := s.replaceWorker(ctx, sl, w, req.why, stopCtx)
				req.res <- err
				if err == nil {
					w, limit = nw, s.requestLimit()
				}
			case now := <-check:
				if now.Before(recycleAfter) {
					continue
				}
				why := s.overLimit(ctx, w, limit)
				if why == "" {
					continue
				}
				s.log.Info("recycling worker", append(workerAttrs(sl.name, w), "reason", why)...)
				nw, err := s.replaceWorker(ctx, sl, w, why, stopCtx)
				if err != nil {
					recycleFails++
					wait := backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, recycleFails)
					recycleAfter = time.Now().Add(wait)
					s.log.Error("recycling worker failed; it keeps serving", "worker", sl.name, "reason", why, "retry_in", wait.String(), "err", err)
					continue
				}
				recycleFails = 0
				w, limit = nw, s.requestLimit()
			case <-ctx.Done():
				s.takeOut(sl, w)
				if err := w.Stop(stopCtx()); err != nil {
					s.log.Warn("worker stop", "worker", sl.name, "err", err)
				}
				return
			}
		}
	}
}

// workerAttrs are the log attributes of worker w of slot name: its pid,
// and its unit when it has one.
func workerAttrs(name string, w Worker) []any {
	attrs := []any{"worker", name, "pid", w.Pid()}
	if u, ok := w.(interface{ Unit() string }); ok {
		attrs = append(attrs, "unit", u.Unit())
	}
	return attrs
}

// replaceWorker starts a new worker in sl and, once it is ready, takes old
// out and stops it in the background. why is the recycle reason ("" for a
// restart). On error old keeps serving.
func (s *Supervisor) replaceWorker(ctx context.Context, sl *slot, old Worker, why string, stopCtx func() context.Context) (Worker, error) {
	nw, err := s.start(ctx, sl)
	if err != nil {
		s.update(func() { sl.starting = nil })
		return nil, err
	}
	// The new worker takes requests before the old one stops.
	s.update(func() {
		sl.worker, sl.since, sl.starting = nw, time.Now(), nil
		sl.restarts++
		if why != "" {
			sl.recycles++
			sl.lastRecycle = why
			s.recycles++
			if s.recycleKinds == nil {
				s.recycleKinds = map[string]int{}
			}
			s.recycleKinds[RecycleKind(why)]++
		}
	})
	s.cfg.OnReady(nw)
	s.cfg.OnGone(old)
	msg := "worker replaced"
	if why != "" {
		msg = "worker recycled"
	}
	s.log.Info(msg, "worker", sl.name, "old_pid", old.Pid(), "pid", nw.Pid(), "reason", or(why, "restart"))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := old.Stop(stopCtx()); err != nil {
			s.log.Warn("worker stop", "worker", sl.name, "pid", old.Pid(), "err", err)
		}
	}()
	return nw, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// served is how many requests w was given (1 when unknown).
func (s *Supervisor) served(w Worker) uint64 {
	if s.cfg.Served == nil {
		return 1
	}
	return s.cfg.Served(w)
}

// requestLimit draws one worker's request limit: MaxRequests less up to a
// tenth (0: none).
func (s *Supervisor) requestLimit() uint64 {
	n := s.cfg.MaxRequests
	if n == 0 {
		return 0
	}
	return n - rand.Uint64N(n/10+1)
}

// overLimit says why w is to be recycled, or "".
func (s *Supervisor) overLimit(ctx context.Context, w Worker, limit uint64) string {
	if limit > 0 {
		if n := s.cfg.Served(w); n >= limit {
			return fmt.Sprintf("max requests: served %d (limit %d)", n, limit)
		}
	}
	if s.cfg.MemoryLimit > 0 {
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		u, err := w.Usage(uctx)
		cancel()
		if err == nil && u.Memory > s.cfg.MemoryLimit {
			return fmt.Sprintf("memory: %s over the limit of %s", FormatBytes(u.Memory), FormatBytes(s.cfg.MemoryLimit))
		}
	}
	return ""
}

// FormatBytes prints n in binary units: "512 MiB".
func FormatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 || f >= 100 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// takeOut takes w out of service.
func (s *Supervisor) takeOut(sl *slot, w Worker) {
	s.update(func() {
		if sl.worker == w {
			sl.worker = nil
		}
	})
	s.cfg.OnGone(w)
}

// start starts a worker for sl within the spawn timeout, recording it as
// starting (the caller clears sl.starting). A start that takes long is
// logged at startWarnAfter and every startWarnEvery after, quoting the
// app's output.
func (s *Supervisor) start(ctx context.Context, sl *slot) (Worker, error) {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SpawnTimeout)
	defer cancel()
	spec := s.cfg.Spec(sl.name)
	st := &starting{since: time.Now(), probe: spec.Probe}
	spec.Started = func(pid int, output func() []string) {
		s.update(func() { st.pid, st.output = pid, output })
	}
	s.update(func() { sl.starting = st })
	type result struct {
		w   Worker
		err error
	}
	res := make(chan result, 1)
	go func() {
		w, err := s.cfg.Backend.Start(sctx, spec)
		res <- result{w, err}
	}()
	warn := time.NewTimer(startWarnAfter)
	defer warn.Stop()
	for {
		select {
		case r := <-res:
			return r.w, r.err
		case <-warn.C:
			s.mu.Lock()
			pid, waiting, output := st.pid, st.waiting(), st.output
			s.mu.Unlock()
			var lines []string
			if output != nil {
				lines = output()
			}
			s.log.Warn("worker not ready yet", "worker", sl.name, "pid", pid, "for", roundSecond(time.Since(st.since)),
				"waiting", waiting, "spawn_timeout", s.cfg.SpawnTimeout.String(), "output", strings.Join(lines, "\n"))
			warn.Reset(startWarnEvery)
		}
	}
}

// backoff is min·2^(n-1), capped at max.
func backoff(min, max time.Duration, n int) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return time.Duration(minInt64(int64(d), int64(max)))
}

func minInt64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

// pause waits d before the slot's next start. A rolling restart that asks
// for this slot meanwhile cuts the wait short: the next start answers it.
// It reports false when ctx ends first.
func (s *Supervisor) pause(ctx context.Context, sl *slot, d time.Duration) (bool, chan error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, nil
	case req := <-sl.replace:
		return true, req.res
	case <-ctx.Done():
		return false, nil
	}
}

// RecycleKind is the kind of a recycle reason, for counting: "max_requests",
// "memory", "blocked" (an event loop blocked past the maximum request
// time), or "other".
func RecycleKind(why string) string {
	switch {
	case strings.HasPrefix(why, "max requests"):
		return "max_requests"
	case strings.HasPrefix(why, "memory"):
		return "memory"
	case strings.Contains(why, "blocked"):
		return "blocked"
	}
	return "other"
}
