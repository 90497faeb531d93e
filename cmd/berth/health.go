package main

import (
	"os"
	"time"

	"berth/activation"
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
