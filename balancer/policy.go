package balancer

import "slices"

// leastBusy returns the upstream in ups serving the fewest requests,
// ignoring those held out of rotation and those in skip. Ties go
// round-robin: the scan starts at start mod len(ups), so idle workers take
// turns. It returns nil when no upstream is left.
func leastBusy(ups, skip []*Upstream, start int) *Upstream {
	var best *Upstream
	n := len(ups)
	if n == 0 {
		return nil
	}
	start %= n
	if start < 0 {
		start += n
	}
	for i := 0; i < n; i++ {
		u := ups[(start+i)%n]
		if u.hold.Load() != 0 || slices.Contains(skip, u) {
			continue
		}
		if best == nil || u.inflight.Load() < best.inflight.Load() {
			best = u
		}
	}
	return best
}
