package spawner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// Workers is how many workers to keep running.
	Workers int
	// SpawnTimeout bounds a worker's start. If zero, DefaultSpawnTimeout.
	SpawnTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait before restarting a worker
	// that failed; the wait doubles with every failure in a row. If zero,
	// 500ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// Stable is how long a worker must run before its failure count is
	// reset. If zero, 10s.
	Stable time.Duration
	// OnReady is called when a worker is ready to take requests.
	OnReady func(Worker)
	// OnGone is called when a worker stops taking requests: it exited, or
	// is about to be stopped. Called once per worker passed to OnReady.
	OnGone func(Worker)
	// OnChange is called whenever the Status changes.
	OnChange func(Status)
	// Log receives the supervisor's messages. If nil, nothing is logged.
	Log *slog.Logger
}

// DefaultSpawnTimeout bounds a worker's start.
const DefaultSpawnTimeout = 60 * time.Second

// Status is a snapshot of the supervised workers.
type Status struct {
	// Wanted is the number of workers the supervisor keeps.
	Wanted int
	// Ready is the number of workers taking requests.
	Ready int
	// Failing is non-empty while workers fail to start: the last error.
	Failing string
	// Workers lists the ready workers.
	Workers []WorkerStatus
}

// WorkerStatus describes one ready worker.
type WorkerStatus struct {
	Name     string
	Pid      int
	Since    time.Time
	Restarts int
}

// Supervisor keeps workers running. Create it with NewSupervisor, run it
// with Run.
type Supervisor struct {
	cfg SupervisorConfig
	log *slog.Logger

	mu      sync.Mutex // protects slots, failing, named
	slots   []*slot
	failing string
	named   int // slots ever made: names are never reused

	restartReq chan chan error
	scaleReq   chan int
}

type slot struct {
	name     string
	worker   Worker // nil while not ready
	since    time.Time
	restarts int
	replace  chan chan error // a rolling restart asks this slot to replace its worker
	cancel   context.CancelFunc
	done     chan struct{} // closed when the slot's goroutine returns
}

// NewSupervisor checks cfg and fills its defaults.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Backend == nil || cfg.Spec == nil {
		return nil, errors.New("spawner: supervisor needs a Backend and a Spec")
	}
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("spawner: want at least 1 worker, not %d", cfg.Workers)
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
	return &slot{name: fmt.Sprintf("w%d", s.named), replace: make(chan chan error), done: make(chan struct{})}
}

// Status returns a snapshot of the workers.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Supervisor) statusLocked() Status {
	st := Status{Wanted: len(s.slots), Failing: s.failing}
	for _, sl := range s.slots {
		if sl.worker != nil {
			st.Ready++
			st.Workers = append(st.Workers, WorkerStatus{Name: sl.name, Pid: sl.worker.Pid(), Since: sl.since, Restarts: sl.restarts})
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
// stops them all (each within its stop timeout, or until stopCtx() ends)
// and returns.
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
	go s.serveRestarts(ctx)
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
					sl.cancel() // the slot takes its worker out and stops it
				}
			})
		}
	}
}

// Scale sets how many workers to keep (at least 1). Workers are added by
// starting new ones and removed newest first, each draining gracefully.
func (s *Supervisor) Scale(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("spawner: want at least 1 worker, not %d", n)
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
		case sl.replace <- res:
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
// goroutine.
func (s *Supervisor) runSlot(ctx context.Context, sl *slot, stopCtx func() context.Context) {
	failures := 0
	var pending chan error // a replace request waiting for a start
	for ctx.Err() == nil {
		w, err := s.start(ctx, sl.name)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			wait := backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, failures)
			s.log.Error("worker failed to start", "worker", sl.name, "attempt", failures, "retry_in", wait.String(), "err", err)
			s.update(func() { s.failing = err.Error() })
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
		s.update(func() {
			sl.worker, sl.since = w, time.Now()
			if failures > 0 || sl.restarts > 0 {
				sl.restarts++
			}
			s.failing = ""
		})
		s.log.Info("worker ready", "worker", sl.name, "pid", w.Pid())
		s.cfg.OnReady(w)

		// Serve until the worker dies, is replaced, or berth stops.
		for w != nil {
			select {
			case <-w.Done():
				s.takeOut(sl, w)
				up := time.Since(sl.since)
				s.log.Warn("worker exited", "worker", sl.name, "pid", w.Pid(), "uptime", up.Round(time.Millisecond).String(), "err", w.Err())
				if up >= s.cfg.Stable {
					failures = 0
				}
				failures++
				w = nil
				if failures > 1 {
					var ok bool
					if ok, pending = s.pause(ctx, sl, backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, failures-1)); !ok {
						return
					}
				}
			case res := <-sl.replace:
				nw, err := s.start(ctx, sl.name)
				if err != nil {
					res <- err
					continue
				}
				// The new worker takes requests before the old one stops.
				s.update(func() { sl.worker, sl.since = nw, time.Now(); sl.restarts++ })
				s.cfg.OnReady(nw)
				s.cfg.OnGone(w)
				old := w
				w = nw
				s.log.Info("worker replaced", "worker", sl.name, "old_pid", old.Pid(), "pid", nw.Pid())
				go old.Stop(stopCtx())
				res <- nil
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

// takeOut takes w out of service.
func (s *Supervisor) takeOut(sl *slot, w Worker) {
	s.update(func() {
		if sl.worker == w {
			sl.worker = nil
		}
	})
	s.cfg.OnGone(w)
}

func (s *Supervisor) start(ctx context.Context, name string) (Worker, error) {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SpawnTimeout)
	defer cancel()
	return s.cfg.Backend.Start(sctx, s.cfg.Spec(name))
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
	case res := <-sl.replace:
		return true, res
	case <-ctx.Done():
		return false, nil
	}
}
