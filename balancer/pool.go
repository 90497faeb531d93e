package balancer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// PoolConfig configures a Pool. The zero value is usable.
type PoolConfig struct {
	// QueueTimeout is how long a request waits for a worker when none is
	// ready. If zero, DefaultQueueTimeout.
	QueueTimeout time.Duration
	// MaxQueue is how many requests may wait at once; more are refused
	// with 503 at once. If zero, DefaultMaxQueue; negative means no limit.
	MaxQueue int
}

// Defaults for PoolConfig.
const (
	DefaultQueueTimeout = 10 * time.Second
	DefaultMaxQueue     = 100
)

// Errors Acquire returns; the proxy answers them with 503.
var (
	ErrQueueFull = errors.New("balancer: request queue is full")
	ErrNoWorker  = errors.New("balancer: no worker is ready")
)

// UnavailableError is returned by Acquire when no worker is ready and the
// pool knows why (the app fails to start, berth is stopping).
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return "balancer: app unavailable: " + e.Reason }

// Pool holds the ready workers and picks one per request.
type Pool struct {
	cfg PoolConfig

	mu      sync.Mutex // protects reason, changed; serializes the writers of ups
	reason  string
	changed chan struct{} // closed and replaced when ups or reason change

	// ups is the workers in service: a slice replaced, never changed, under
	// mu, and read without it, so that a request picks its worker without
	// the lock (on the event-loop engine a Task that parked on mu would
	// stall its whole loop).
	ups atomic.Pointer[[]*Upstream]

	queued atomic.Int64
	total  atomic.Uint64
}

// NewPool returns an empty pool.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = DefaultQueueTimeout
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	return &Pool{cfg: cfg, changed: make(chan struct{})}
}

// Add puts u in service. u is new: a worker Remove took out is not
// added again (pick relies on it: a retired worker is never in service).
func (p *Pool) Add(u *Upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ups := append(slices.Clone(p.snapshot()), u)
	p.ups.Store(&ups)
	p.changedLocked()
}

// Remove takes u out of service; requests it is serving go on.
func (p *Pool) Remove(u *Upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.snapshot()
	if i := slices.Index(old, u); i >= 0 {
		// Out of the slice first, then retired: see pick.
		ups := slices.Delete(slices.Clone(old), i, i+1)
		p.ups.Store(&ups)
		p.changedLocked()
		u.retire()
	}
}

// SetUnavailable records why no worker is ready ("" clears it). While set
// and no worker is ready, requests fail at once with that reason instead of
// waiting.
func (p *Pool) SetUnavailable(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reason != reason {
		p.reason = reason
		p.changedLocked()
	}
}

func (p *Pool) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Upstreams returns the workers in service.
func (p *Pool) Upstreams() []*Upstream {
	return slices.Clone(p.snapshot())
}

// snapshot is the workers in service, read without the lock; the caller
// must not change it.
func (p *Pool) snapshot() []*Upstream {
	if ups := p.ups.Load(); ups != nil {
		return *ups
	}
	return nil
}

// Queued is the number of requests waiting for a worker.
func (p *Pool) Queued() int64 { return p.queued.Load() }

// Total is the number of requests workers completed since the pool began.
func (p *Pool) Total() uint64 { return p.total.Load() }

// Acquire picks the least-busy worker not in skip and counts the request
// against it; the caller must Release it. With no worker ready it waits in
// the bounded queue until one is, ctx ends, or the queue timeout passes.
func (p *Pool) Acquire(ctx context.Context, skip []*Upstream) (*Upstream, error) {
	return p.AcquirePreferring(ctx, nil, skip)
}

// AcquirePreferring is Acquire, but takes the worker named prefer when it
// is in service, not held and not in skip (sticky sessions).
func (p *Pool) AcquirePreferring(ctx context.Context, prefer []byte, skip []*Upstream) (*Upstream, error) {
	if u, _, _ := p.pick(prefer, skip); u != nil {
		return u, nil
	}
	if n := p.queued.Add(1); p.cfg.MaxQueue > 0 && n > int64(p.cfg.MaxQueue) {
		p.queued.Add(-1)
		return nil, ErrQueueFull
	}
	defer p.queued.Add(-1)
	timer := time.NewTimer(p.cfg.QueueTimeout)
	defer timer.Stop()
	for {
		u, reason, changed := p.pick(prefer, skip)
		if u != nil {
			return u, nil
		}
		if reason != "" {
			return nil, &UnavailableError{Reason: reason}
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("%w after waiting %s", ErrNoWorker, p.cfg.QueueTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pick takes the preferred or least-busy upstream, or reports why there
// is none and a channel closed on the next change. Held workers are
// waited for: they come back.
//
// The common case takes no lock. It counts the request against a worker
// from the snapshot and then looks whether that worker was retired in
// between; Remove stores the slice without it, marks it out and then
// looks at its count, so with sequentially consistent atomics either
// pick sees it out and gives the request back, or retire sees the request
// and the worker's drain waits for its Release.
func (p *Pool) pick(prefer []byte, skip []*Upstream) (*Upstream, string, <-chan struct{}) {
	if u := p.tryPick(p.snapshot(), prefer, skip); u != nil {
		return u, "", nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ups := p.snapshot()
	u := choose(ups, prefer, skip)
	if u == nil {
		reason := p.reason
		if reason == "" && len(ups) > 0 && len(skip) > 0 && allIn(ups, skip) {
			reason = "every worker failed this request"
		}
		return nil, reason, p.changed
	}
	// Under the lock no Remove runs, and u is in ups: it is not out.
	u.inflight.Add(1)
	return u, "", nil
}

// tryPick counts the request against the worker choose takes from ups, a
// snapshot read without the lock, unless it was retired since: then it
// gives the request back and returns nil, as it does when ups has none.
func (p *Pool) tryPick(ups []*Upstream, prefer []byte, skip []*Upstream) *Upstream {
	u := choose(ups, prefer, skip)
	if u == nil {
		return nil
	}
	u.inflight.Add(1)
	if !u.out.Load() {
		return u
	}
	if u.inflight.Add(-1) == 0 {
		u.checkDrained()
	}
	return nil
}

// choose is the worker named prefer when it is in ups, not held and not
// in skip (sticky sessions); otherwise the least-busy one.
func choose(ups []*Upstream, prefer []byte, skip []*Upstream) *Upstream {
	if len(prefer) > 0 {
		for _, x := range ups {
			if x.Name == string(prefer) && x.hold.Load() == 0 && !slices.Contains(skip, x) {
				return x
			}
		}
	}
	return leastBusy(ups, skip)
}

func allIn(ups, skip []*Upstream) bool {
	for _, u := range ups {
		if !slices.Contains(skip, u) {
			return false
		}
	}
	return true
}

// Reasons a worker is held out of rotation: it gets no new request while
// any is set, and requests wait for it (or another) in the queue.
const (
	// HoldBlocked: its event loop has not answered a heartbeat in time.
	HoldBlocked uint32 = 1 << iota
	// HoldOOB: it runs out-of-band work.
	HoldOOB
	// HoldRecycle: it is being replaced and finishes what it has.
	HoldRecycle
)

// SetHold sets or clears one hold reason of u.
func (p *Pool) SetHold(u *Upstream, reason uint32, on bool) {
	for {
		old := u.hold.Load()
		nw := old &^ reason
		if on {
			nw = old | reason
		}
		if old == nw || u.hold.CompareAndSwap(old, nw) {
			break
		}
	}
	p.mu.Lock()
	p.changedLocked()
	p.mu.Unlock()
}

// Lookup returns the upstream in service named name, or nil.
func (p *Pool) Lookup(name string) *Upstream {
	for _, u := range p.snapshot() {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// Drain takes u out of service and waits until the requests it is serving
// are done, or ctx ends (then it returns ctx's error). Stopping a worker
// only after that means no request is ever written to a connection the
// worker is closing because it was told to stop.
func (p *Pool) Drain(ctx context.Context, u *Upstream) error {
	p.Remove(u)
	u.mu.Lock()
	drained := u.drained
	u.mu.Unlock()
	if drained == nil { // u was not in the pool
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release ends a request Acquire counted; it counts as served.
func (p *Pool) Release(u *Upstream) {
	if u.inflight.Add(-1) == 0 && u.out.Load() {
		u.checkDrained()
	}
	u.served.Add(1)
	p.total.Add(1)
}
