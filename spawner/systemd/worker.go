package systemd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"

	"berth/spawner"
)

// worker is one invocation of the service unit of one of a worker name's
// unit pairs: the process with pid, from its start until the unit leaves
// the active state or gets another main process.
type worker struct {
	spawner.Liveness // from its readiness connection; set before Start returns
	b                *Backend
	p                *pair
	spec             spawner.Spec
	pid              int
	done             chan struct{}
	err              error // set before done is closed
}

// Name implements spawner.Worker: the worker's name ("w1").
func (w *worker) Name() string { return w.p.sl.name }

// Unit is the worker's service unit (berth-APP-w1.service, or a later
// generation's berth-APP-w1-g2.service), for log lines.
func (w *worker) Unit() string { return w.p.service }

// Addr implements spawner.Worker: its pair's socket (w1.sock, or a later
// generation's w1-g2.sock).
func (w *worker) Addr() (network, address string) { return "unix", w.p.sockPath }

// Pid implements spawner.Worker.
func (w *worker) Pid() int { return w.pid }

// Done implements spawner.Worker: closed when the unit leaves the active
// state or its main process changes, as systemd's signals tell.
func (w *worker) Done() <-chan struct{} { return w.done }

// Err implements spawner.Worker.
func (w *worker) Err() error { return w.err }

// follow closes done when the watcher sees this invocation end. A unit's
// removal alone is no sign: systemd reports every unit removed when it
// re-executes (systemctl daemon-reexec); a unit that really goes has left
// the active state first.
func (w *worker) follow() {
	st, err := w.b.w.wait(w.b.ctx, w.p.service, func(u *unitState) bool {
		return u.MainPID != w.pid || !isActive(u.ActiveState)
	})
	switch {
	case err != nil:
		w.err = fmt.Errorf("unit %s: no longer followed: %w", w.p.service, err)
	case st.MainPID != w.pid && st.MainPID != 0:
		w.err = fmt.Errorf("unit %s: pid %d replaced by pid %d", w.p.service, w.pid, st.MainPID)
	default:
		w.err = fmt.Errorf("unit %s: pid %d %s", w.p.service, w.pid, describe(st))
	}
	close(w.done)
}

// Stop implements spawner.Worker: SIGTERM to the unit's processes, SIGKILL
// when the stop timeout or ctx runs out. It sends signals (KillUnit) rather
// than queuing a stop job: while systemd stops berth's own unit, a stop job
// on a worker would wait behind berth's, and berth would wait for it.
//
// Stop stops this process only: the name stays for the next Start, until
// Release, and so does its current pair's socket unit (a crashed worker's
// service is started again behind it). A worker whose pair is no longer
// its name's current one (a newer pair took over in a rolling restart)
// has its pair given up once it is stopped: its units are stopped and its
// readiness sockets closed. Stop on a worker that was already replaced in
// its pair does nothing.
func (w *worker) Stop(ctx context.Context) error {
	p := w.p
	p.mu.Lock()
	err := w.stopLocked(ctx)
	p.mu.Unlock()
	if p.sl.current() != p {
		if gerr := w.b.giveUp(ctx, p, false); gerr != nil {
			w.b.log.Warn("give up worker units", "unit", p.service, "err", gerr)
		}
	}
	return err
}

// Usage implements spawner.Worker: the service's control group, as
// systemd accounts it (MemoryCurrent, CPUUsageNSec).
func (w *worker) Usage(ctx context.Context) (spawner.Usage, error) {
	var u spawner.Usage
	for _, p := range []struct {
		name string
		set  func(uint64)
	}{
		{"MemoryCurrent", func(v uint64) { u.Memory = v }},
		{"CPUUsageNSec", func(v uint64) { u.CPU = time.Duration(v) }},
	} {
		prop, err := w.b.bus.GetServicePropertyContext(ctx, w.p.service, p.name)
		if err != nil {
			return u, fmt.Errorf("usage of unit %s: %w", w.p.service, err)
		}
		var v uint64
		if err := prop.Value.Store(&v); err != nil {
			return u, fmt.Errorf("usage of unit %s: %s: %w", w.p.service, p.name, err)
		}
		if v != math.MaxUint64 { // systemd's "not accounted"
			p.set(v)
		}
	}
	return u, nil
}

// stopLocked is Stop with the pair's lock held, without giving the pair
// up. A worker that is no longer its pair's current one is over already:
// the signals would reach its successor.
func (w *worker) stopLocked(ctx context.Context) error {
	if w.p.current != w || isClosed(w.done) {
		return nil
	}
	what := fmt.Sprintf("stop worker %s (pid %d)", w.p.service, w.pid)
	// KillUnit may report an error for a signal that reached the main
	// process but not every other one; the unit's state says whether the
	// worker ended.
	kerr := w.b.bus.KillUnitWithTarget(ctx, w.p.service, sd.All, int32(syscall.SIGTERM))
	t := time.NewTimer(w.spec.StopTimeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.b.bus.KillUnitWithTarget(kctx, w.p.service, sd.All, int32(syscall.SIGKILL)); err != nil {
		kerr = err
	}
	select {
	case <-w.done:
	case <-kctx.Done():
		return fmt.Errorf("%s: still running after SIGKILL: %w", what, errors.Join(kerr, kctx.Err()))
	}
	return errors.New(what + ": killed after it did not exit in time")
}

func isActive(state string) bool { return state == "active" || state == "reloading" }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// describe says how a service's main process ended.
func describe(st unitState) string {
	var how string
	switch st.ExecCode {
	case 1:
		how = fmt.Sprintf("exited with status %d", st.ExecStatus)
	case 2:
		how = fmt.Sprintf("killed by signal %d (%v)", st.ExecStatus, syscall.Signal(st.ExecStatus))
	case 3:
		how = fmt.Sprintf("dumped core on signal %d (%v)", st.ExecStatus, syscall.Signal(st.ExecStatus))
	default:
		how = "ended"
	}
	return fmt.Sprintf("%s (result %s)", how, or(st.Result, "unknown"))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
