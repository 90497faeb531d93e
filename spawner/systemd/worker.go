package systemd

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"

	"berth/spawner"
)

// worker is one invocation of a worker's service unit: the process with
// pid, from its start until the unit leaves the active state or gets
// another main process.
type worker struct {
	b    *Backend
	sl   *slot
	spec spawner.Spec
	pid  int
	done chan struct{}
	err  error // set before done is closed
}

// Name implements spawner.Worker: the service unit's name.
func (w *worker) Name() string { return w.sl.service }

// Addr implements spawner.Worker: the socket unit's socket.
func (w *worker) Addr() (network, address string) { return "unix", w.sl.sockPath }

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
	st, err := w.b.w.wait(w.b.ctx, w.sl.service, func(u *unitState) bool {
		return u.MainPID != w.pid || !isActive(u.ActiveState)
	})
	switch {
	case err != nil:
		w.err = fmt.Errorf("unit %s: no longer followed: %w", w.sl.service, err)
	case st.MainPID != w.pid && st.MainPID != 0:
		w.err = fmt.Errorf("unit %s: pid %d replaced by pid %d", w.sl.service, w.pid, st.MainPID)
	default:
		w.err = fmt.Errorf("unit %s: pid %d %s", w.sl.service, w.pid, describe(st))
	}
	close(w.done)
}

// Stop implements spawner.Worker: SIGTERM to the unit's processes, SIGKILL
// when the stop timeout or ctx runs out. It sends signals (KillUnit) rather
// than queuing a stop job: while systemd stops berth's own unit, a stop job
// on a worker would wait behind berth's, and berth would wait for it.
//
// The supervisor stops the current worker of a name only when it gives the
// name up (fewer workers, or berth stopping): a restart goes through Start.
// So Stop also retires the name: its socket unit is stopped (without
// waiting, for the same reason) and its readiness sockets closed. Stop on a
// worker that was already replaced does nothing.
func (w *worker) Stop(ctx context.Context) error {
	w.sl.mu.Lock()
	defer w.sl.mu.Unlock()
	if w.sl.current != w {
		return nil
	}
	err := w.stopLocked(ctx)
	w.b.retire(w.sl)
	return err
}

// stopLocked is Stop with the slot's lock held. A worker that is no longer
// the slot's current one is over already: the signals would reach its
// successor.
func (w *worker) stopLocked(ctx context.Context) error {
	if w.sl.current != w || isClosed(w.done) {
		return nil
	}
	what := fmt.Sprintf("stop worker %s (pid %d)", w.sl.service, w.pid)
	// KillUnit may report an error for a signal that reached the main
	// process but not every other one; the unit's state says whether the
	// worker ended.
	kerr := w.b.mgr.KillUnitWithTarget(ctx, w.sl.service, sd.All, int32(syscall.SIGTERM))
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
	if err := w.b.mgr.KillUnitWithTarget(kctx, w.sl.service, sd.All, int32(syscall.SIGKILL)); err != nil {
		kerr = err
	}
	select {
	case <-w.done:
	case <-kctx.Done():
		return fmt.Errorf("%s: still running after SIGKILL: %w", what, errors.Join(kerr, kctx.Err()))
	}
	return errors.New(what + ": killed after it did not exit in time")
}
