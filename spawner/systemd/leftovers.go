package systemd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"berth/units"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

// leftoverGrace is how long clear waits for stopped leftover units to be
// collected before it considers reusing them.
const leftoverGrace = time.Second

// sweep stops the units of every generation but the first that a crashed
// (or restarting) berth left under the slot's worker name, before its
// first start (clear takes care of the first generation's names, which
// that start makes). They are not waited for: a generation this berth
// makes later whose names are still loaded then is cleared by create.
func (b *Backend) sweep(ctx context.Context, sl *slot) error {
	st, err := b.bus.ListUnitsByPatternsContext(ctx, nil, units.WorkerPatterns(sl.app, sl.name))
	if err != nil {
		return fmt.Errorf("look for leftover units of worker %s: %w", sl.name, err)
	}
	first := []string{units.WorkerGenService(sl.app, sl.name, 1), units.WorkerGenSocket(sl.app, sl.name, 1)}
	var left []string
	for _, u := range st {
		if u.LoadState != "" && u.LoadState != "not-found" && !slices.Contains(first, u.Name) {
			left = append(left, u.Name)
		}
	}
	if len(left) == 0 {
		return nil
	}
	slices.Sort(left)
	b.log.Info("stopping leftover worker units", "units", strings.Join(left, " "))
	for _, u := range left {
		if err := b.w.watch(ctx, u); err != nil {
			return err
		}
		err := b.runJob(ctx, u, func() (int, error) { return b.bus.StopUnitContext(ctx, u, "replace", nil) })
		b.bus.ResetFailedUnitContext(ctx, u)
		b.w.unwatch(ctx, u)
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("stop leftover unit %s: %w", u, err)
		}
	}
	return nil
}

// clear stops units that a crashed (or restarting) berth left under the
// pair's names and waits until systemd has collected them, so that they
// can be made anew. systemd keeps a stopped unit loaded while it cannot
// tell that its control group is empty (seen with cgroup v1 in a
// container); such a service is reused (reuse is true) when it carries the
// same settings digest, and waited for otherwise.
func (b *Backend) clear(ctx context.Context, p *pair, digest string) (reuse bool, err error) {
	st, err := b.bus.ListUnitsByNamesContext(ctx, []string{p.socket, p.service})
	if err != nil {
		return false, fmt.Errorf("look for leftover units %s, %s: %w", p.socket, p.service, err)
	}
	var left []string
	for _, u := range st {
		if u.LoadState != "" && u.LoadState != "not-found" {
			left = append(left, u.Name)
		}
	}
	if len(left) == 0 {
		return false, nil
	}
	b.log.Info("stopping leftover worker units", "units", strings.Join(left, " "))
	for _, u := range left {
		err := b.runJob(ctx, u, func() (int, error) { return b.bus.StopUnitContext(ctx, u, "replace", nil) })
		if err != nil && ctx.Err() != nil {
			return false, fmt.Errorf("stop leftover unit %s: %w", u, err)
		}
		b.bus.ResetFailedUnitContext(ctx, u) // a failed unit is not collected before this
	}
	removed := func(ctx context.Context, u string) bool {
		_, err := b.w.wait(ctx, u, func(s *unitState) bool { return s.Removed })
		return err == nil
	}
	gctx, cancel := context.WithTimeout(ctx, leftoverGrace)
	defer cancel()
	var stay []string
	for _, u := range left {
		if !removed(gctx, u) {
			stay = append(stay, u)
		}
	}
	if len(stay) == 0 {
		return false, nil
	}
	if len(stay) == 1 && stay[0] == p.service {
		prop, err := b.bus.GetServicePropertyContext(ctx, p.service, "Environment")
		var env []string
		if err == nil && prop.Value.Store(&env) == nil && slices.Contains(env, digestVar+"="+digest) {
			b.log.Info("reusing stopped worker unit that systemd keeps loaded", "unit", p.service)
			return true, nil
		}
	}
	b.log.Warn("leftover worker units stay loaded; waiting for systemd to collect them", "units", strings.Join(stay, " "))
	for _, u := range stay {
		if !removed(ctx, u) {
			return false, fmt.Errorf("leftover unit %s stays loaded (systemctl status %s)", u, u)
		}
	}
	return false, nil
}

// reuse makes and starts the pair's socket unit for a service unit that is
// still loaded with the same settings.
func (b *Backend) reuse(ctx context.Context, p *pair, sockProps []sd.Property) error {
	err := b.runJob(ctx, p.socket, func() (int, error) {
		return b.bus.StartTransientUnitAux(ctx, p.socket, "fail", sockProps, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("make unit %s for the loaded %s: %w", p.socket, p.service, err)
	}
	return nil
}
