package balancer

import "slices"

// leastBusy returns the upstream in ups serving the fewest requests,
// ignoring those held out of rotation and those in skip. Ties go to the
// first in ups (the order workers came into service), as Passenger's
// first-available pick does: at low traffic one worker serves every
// request with its caches and compiled code warm, and the next takes
// requests only while it is busy. It returns nil when no upstream is left.
func leastBusy(ups, skip []*Upstream) *Upstream {
	var best *Upstream
	var least int64
	for _, u := range ups {
		if u.hold.Load() != 0 || slices.Contains(skip, u) {
			continue
		}
		if n := u.inflight.Load(); best == nil || n < least {
			best, least = u, n
		}
	}
	return best
}
