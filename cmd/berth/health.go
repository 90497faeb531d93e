package main

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"berth/activation"
	"berth/balancer"
	"berth/spawner"
)

// Wiring of the workers' health (issue 10) that serve.go calls.

// served is how many requests the pool gave w: those it completed and
// those in flight (a request that crashes its worker counts). 0 once w is
// out of the pool.
func (u *upstreams) served(w spawner.Worker) uint64 {
	u.mu.Lock()
	up := u.m[w]
	u.mu.Unlock()
	if up == nil {
		return 0
	}
	return up.Served() + uint64(max(up.Inflight(), 0))
}

// unavailableText is the pool's reason to answer 503 at once: set while
// the app fails to start and no worker is ready. Visitors get the public
// text; the app's output (stack traces, paths) only with
// --friendly-error-pages.
func unavailableText(st spawner.Status, friendly bool) string {
	if st.Failing == "" || st.Ready > 0 {
		return ""
	}
	public, detail := st.Unavailable(time.Now())
	if friendly {
		return detail
	}
	return public + ". The details are in berth's log and `berth status`."
}

// waitingText says, for a request that waited in vain for a worker, what
// the workers being started are waiting for; the app's output only with
// --friendly-error-pages.
func waitingText(st spawner.Status, friendly bool) string {
	public, detail := st.Unavailable(time.Now())
	if friendly {
		return detail
	}
	return public
}

// inheritedAll reports whether every listener came from socket activation.
func inheritedAll(ls []activation.Listener) bool {
	for _, l := range ls {
		if !l.Inherited {
			return false
		}
	}
	return len(ls) > 0
}

// fileMtime is path's modification time, zero if it does not exist.
func fileMtime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// idleWatch tells when berth has been idle (no request served, in flight
// or queued, no restart running) for a while: --exit-idle-time.
type idleWatch struct {
	after     time.Duration
	lastTotal uint64
	lastBusy  time.Time
}

// idle records the load at now and reports whether nothing happened for
// w.after.
func (w *idleWatch) idle(now time.Time, total uint64, l spawner.Load, restarting bool) bool {
	if w.lastBusy.IsZero() || total != w.lastTotal || l.Inflight > 0 || l.Queued > 0 || restarting {
		w.lastTotal, w.lastBusy = total, now
		return false
	}
	return now.Sub(w.lastBusy) >= w.after
}

// workerHealth connects the balancer's health hooks to the workers:
// heartbeats hold a worker whose event loop is blocked out of rotation; a
// worker past --max-request-time that is still blocked is recycled; a
// response asking for out-of-band work makes the worker run it, one
// worker at a time, while it gets no new request. Its goroutines end with
// ctx, and wait waits for them.
type workerHealth struct {
	pool       *balancer.Pool
	ups        *upstreams
	maxBlocked time.Duration
	log        *slog.Logger
	ctx        context.Context
	sup        *spawner.Supervisor // set once made, before any request

	oob chan struct{} // one worker runs out-of-band work at a time
	wg  sync.WaitGroup

	mu      sync.Mutex // protects blocked
	blocked map[*balancer.Upstream]bool
}

func newWorkerHealth(ctx context.Context, pool *balancer.Pool, ups *upstreams, maxBlocked time.Duration, log *slog.Logger) *workerHealth {
	return &workerHealth{pool: pool, ups: ups, maxBlocked: maxBlocked, log: log, ctx: ctx,
		oob: make(chan struct{}, 1), blocked: map[*balancer.Upstream]bool{}}
}

// checkBlocked holds out of rotation the workers whose event loop sent no
// heartbeat for maxBlocked, and puts back those that did again.
func (h *workerHealth) checkBlocked(now time.Time) {
	if h.maxBlocked <= 0 {
		return
	}
	for w, up := range h.ups.all() {
		blocked := spawner.Blocked(w, now, h.maxBlocked)
		h.mu.Lock()
		changed := h.blocked[up] != blocked
		if blocked {
			h.blocked[up] = true
		} else {
			delete(h.blocked, up)
		}
		h.mu.Unlock()
		if !changed {
			continue
		}
		h.pool.SetHold(up, balancer.HoldBlocked, blocked)
		if blocked {
			h.log.Warn("worker's event loop is blocked; no new request goes to it", "worker", up.Name, "pid", up.Pid, "max_blocked", h.maxBlocked.String())
		} else {
			h.log.Info("worker's event loop runs again", "worker", up.Name, "pid", up.Pid)
		}
	}
}

// onTimeout is the proxy's OnTimeout: a worker still blocked is replaced
// (SIGTERM, SIGKILL after the stop timeout, once its successor is ready).
func (h *workerHealth) onTimeout(up *balancer.Upstream) {
	w := h.ups.worker(up)
	if w == nil || h.maxBlocked <= 0 || !spawner.Blocked(w, time.Now(), h.maxBlocked) {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := h.sup.Recycle(h.ctx, w.Name(), "event loop blocked past the maximum request time"); err != nil {
			h.log.Error("recycling a blocked worker failed", "worker", w.Name(), "err", err)
		}
	}()
}

// onOOB is the proxy's OnOOB: the worker gets no new request, finishes
// those it has, runs its out-of-band work and comes back.
func (h *workerHealth) onOOB(up *balancer.Upstream) {
	w := h.ups.worker(up)
	l, ok := w.(spawner.Liveness)
	if !ok {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		select {
		case h.oob <- struct{}{}:
		case <-h.ctx.Done():
			return
		}
		defer func() { <-h.oob }()
		h.pool.SetHold(up, balancer.HoldOOB, true)
		defer h.pool.SetHold(up, balancer.HoldOOB, false)
		ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
		defer cancel()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for up.Inflight() > 0 { // the request that asked is still being answered
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		if err := l.OutOfBand(ctx); err != nil {
			h.log.Warn("out-of-band work", "worker", up.Name, "err", err)
			return
		}
		h.log.Debug("out-of-band work done", "worker", up.Name)
	}()
}

// wait waits for the goroutines health started (they end with its ctx).
func (h *workerHealth) wait() { h.wg.Wait() }

// all returns the workers in the pool and their upstreams.
func (u *upstreams) all() map[spawner.Worker]*balancer.Upstream {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.m)
}

// worker returns the worker of up, or nil.
func (u *upstreams) worker(up *balancer.Upstream) spawner.Worker {
	u.mu.Lock()
	defer u.mu.Unlock()
	for w, x := range u.m {
		if x == up {
			return w
		}
	}
	return nil
}
