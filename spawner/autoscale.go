package spawner

import "time"

// Autoscaler decides how many workers to run between Min and Max from the
// load berth observes, as Passenger's min/max instances do: one more
// worker whenever requests wait or every worker is busy, one fewer after
// the pool has had a spare worker for IdleAfter. It holds only its memory
// of the last busy moment; feed it with Observe. The zero value is not
// usable; set Min and Max.
type Autoscaler struct {
	// Min and Max bound the worker count (0 <= Min <= Max, 1 <= Max).
	// With Min 0 the last worker goes after IdleAfter without a request,
	// and a queued request brings one back.
	Min, Max int
	// IdleAfter is how long a spare worker is kept. If zero, 5 minutes.
	IdleAfter time.Duration

	lastBusy time.Time // last time all but one worker were needed
}

// Load is what the balancer sees at one moment.
type Load struct {
	// Ready is how many workers take requests; Inflight, how many requests
	// they serve; Queued, how many requests wait for a worker.
	Ready, Inflight, Queued int
}

// Observe returns the worker count wanted now, given the current count.
func (a *Autoscaler) Observe(now time.Time, current int, l Load) int {
	idleAfter := a.IdleAfter
	if idleAfter == 0 {
		idleAfter = 5 * time.Minute
	}
	want := min(max(current, a.Min), a.Max)
	if a.lastBusy.IsZero() {
		a.lastBusy = now
	}
	// A worker still starting counts as busy: do not add another for it.
	starting := current - l.Ready
	busy := l.Queued > 0 || (l.Ready > 0 && l.Inflight >= l.Ready)
	if busy && starting <= 0 {
		a.lastBusy = now
		return min(want+1, a.Max)
	}
	// A spare worker: one more than the requests in flight need; with Min
	// 0, the last worker when nothing comes.
	spare := l.Inflight < l.Ready-1 || (a.Min == 0 && l.Ready == 1 && l.Inflight == 0 && l.Queued == 0)
	if !spare || starting > 0 {
		a.lastBusy = now
		return want
	}
	if now.Sub(a.lastBusy) >= idleAfter && want > a.Min {
		a.lastBusy = now // one at a time, a full period apart
		return want - 1
	}
	return want
}
