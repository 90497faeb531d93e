package systemd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"berth/spawner"
	"berth/units"
)

// Start implements spawner.Backend. The first start of a worker name makes
// its socket and service units (clearing what a crashed berth left under
// those names); a later start while the previous worker of that name still
// runs restarts the service, so that the socket and the requests waiting in
// it stay; any other start starts the service again.
func (b *Backend) Start(ctx context.Context, spec spawner.Spec) (spawner.Worker, error) {
	what := fmt.Sprintf("worker %s of %s", spec.Name, spec.App)
	began := time.Now()
	if spec.PortEnv {
		return nil, fmt.Errorf("start %s: the systemd back end hands workers a socket; a $PORT app needs --spawner=exec", what)
	}
	if len(spec.Argv) == 0 {
		return nil, fmt.Errorf("start %s: no command", what)
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = spawner.DefaultStopTimeout
	}
	sl, err := b.slot(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()

	old := sl.current
	live := old != nil && !isClosed(old.done)
	if sl.created {
		// The socket unit must still be there: a socket whose service kept
		// failing to start may have given up.
		if err := b.runJob(ctx, sl.socket, func() (int, error) { return b.bus.StartUnitContext(ctx, sl.socket, "replace", nil) }); err != nil {
			b.log.Warn("worker socket unit gone; making the units again", "unit", sl.socket, "err", err)
			sl.created, live = false, false
		}
	}
	if !sl.created {
		if err := b.create(ctx, sl, spec); err != nil {
			return nil, fmt.Errorf("start %s: %w", what, err)
		}
		sl.created, live = true, false
	}

	var id int
	if live {
		b.log.Debug("restarting worker unit", "unit", sl.service, "old_pid", old.pid)
		id, err = b.bus.RestartUnitContext(ctx, sl.service, "replace", nil)
	} else {
		b.bus.ResetFailedUnitContext(ctx, sl.service) // a failed unit starts all the same; this only clears its start limit
		id, err = b.bus.StartUnitContext(ctx, sl.service, "replace", nil)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: start unit %s: %w", what, sl.service, err)
	}
	result, st, err := b.w.job(ctx, sl.service, id)
	if err != nil {
		if ctx.Err() != nil {
			err = spawner.NotReady(ctx.Err())
		}
		return nil, b.startFailed(sl, spec, what, began, fmt.Errorf("start unit %s: %w", sl.service, err))
	}
	if old != nil {
		// The previous worker of this name is over: wait until its handle
		// says so, so that a late Stop on it cannot reach the new one.
		select {
		case <-old.done:
		case <-ctx.Done():
		}
	}
	if result != "done" || !isActive(st.ActiveState) || st.MainPID == 0 {
		return nil, fmt.Errorf("start %s: %w: unit %s: start job %s, %s%s", what, spawner.ErrExited, sl.service, result, describe(st), b.tail(sl.service, began))
	}
	w := &worker{b: b, sl: sl, spec: spec, pid: st.MainPID, done: make(chan struct{})}
	sl.current = w
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		w.follow()
	}()
	b.log.Debug("worker unit started", "unit", sl.service, "pid", w.pid)
	if spec.Started != nil {
		spec.Started(w.pid, func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			return b.cfg.Journal(ctx, sl.service, began, b.cfg.TailLines)
		})
	}

	// READY=1 counts from the worker's process or another live process of
	// its unit.
	pid, err := spawner.ReadyWait{
		Readiness: sl.ready,
		Accept:    func(pid int) bool { return pid == w.pid || inUnit(pid, sl.service) },
		Exited:    w.done, ExitErr: func() error { return w.err },
		Probe: spec.Probe, Network: "unix", Addr: sl.sockPath,
	}.Wait(ctx)
	if err != nil {
		return nil, b.startFailed(sl, spec, what, began, err)
	}
	if pid == 0 {
		pid = w.pid
	}
	w.Liveness = sl.ready.Liveness(pid)
	return w, nil
}

// startFailed stops what a failed start left running and returns its
// error, quoting the worker's journal.
func (b *Backend) startFailed(sl *slot, spec spawner.Spec, what string, began time.Time, err error) error {
	if w := sl.current; w != nil && !isClosed(w.done) {
		sctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout+5*time.Second)
		w.stopLocked(sctx)
		cancel()
	}
	return fmt.Errorf("start %s: %w%s", what, err, b.tail(sl.service, began))
}

// create clears leftovers under the slot's unit names and makes the unit
// pair: the socket unit, started, with the service as its auxiliary unit.
func (b *Backend) create(ctx context.Context, sl *slot, spec spawner.Spec) error {
	argv := append([]string(nil), spec.Argv...)
	if !filepath.IsAbs(argv[0]) {
		p, err := exec.LookPath(argv[0])
		if err != nil {
			return fmt.Errorf("find %s: %w", argv[0], err)
		}
		argv[0] = p
	}
	env := append(workerEnviron(os.Environ()), spec.Env...)
	env = append(env,
		"BERTH_READY_SOCKET="+sl.ready.StreamPath,
		"NOTIFY_SOCKET="+sl.ready.DgramPath,
	)
	uw := units.Worker{
		App: spec.App, Name: spec.Name, Parent: b.cfg.Parent,
		Argv: argv, Dir: spec.Dir, Env: env,
		User: sl.user, Group: sl.group,
		Socket: sl.sockPath, SocketUser: b.sockUser,
		MemoryMax: b.cfg.MemoryMax, MemoryHigh: b.cfg.MemoryHigh, CPUQuota: b.cfg.CPUQuota, TasksMax: b.cfg.TasksMax,
		StopTimeout: spec.StopTimeout, NoSandbox: b.cfg.NoSandbox,
	}
	tu, err := units.TransientUnits(uw)
	if err != nil {
		return err
	}
	// The units carry a digest of their settings, so that units left
	// loaded by an earlier berth can be told fit for reuse or not.
	digest := unitsDigest(tu)
	uw.Env = append(uw.Env, digestVar+"="+digest)
	if tu, err = units.TransientUnits(uw); err != nil {
		return err
	}
	sockProps, svc := tu.Socket.Properties, tu.Service
	for attempt := 0; ; attempt++ {
		reuse, err := b.clear(ctx, sl, digest)
		if err != nil {
			return err
		}
		if reuse {
			return b.reuse(ctx, sl, sockProps)
		}
		err = b.runJob(ctx, sl.socket, func() (int, error) {
			return b.bus.StartTransientUnitAux(ctx, sl.socket, "fail", sockProps, []sd.PropertyCollection{svc.Aux()}, nil)
		})
		var derr godbus.Error
		if attempt == 0 && errors.As(err, &derr) && derr.Name == "org.freedesktop.systemd1.UnitExists" {
			continue // made again meanwhile (systemd restarting it with berth): clear again
		}
		var jerr *jobError
		if errors.As(err, &jerr) && jerr.result == "failed" {
			// The units exist; the socket failed to come up (seen when
			// systemd could not move a helper into its control group).
			// One more try before the supervisor's backoff.
			b.log.Warn("worker socket unit failed to start; trying again", "unit", sl.socket)
			b.bus.ResetFailedUnitContext(ctx, sl.socket)
			err = b.runJob(ctx, sl.socket, func() (int, error) { return b.bus.StartUnitContext(ctx, sl.socket, "replace", nil) })
		}
		if err != nil {
			return fmt.Errorf("make units %s and %s: %w", sl.socket, sl.service, err)
		}
		b.log.Debug("worker units made", "socket", sl.socket, "service", sl.service, "user", sl.user, "parent", b.cfg.Parent)
		return nil
	}
}

// digestVar is the environment variable of a worker's service that holds
// the digest of its units' settings.
const digestVar = "BERTH_UNITS"

// unitsDigest is a short digest of a unit pair's properties.
func unitsDigest(tu units.Transient) string {
	h := sha256.New()
	for _, u := range []units.Unit{tu.Socket, tu.Service} {
		fmt.Fprintf(h, "%s\n", u.Name)
		for _, p := range u.Properties {
			fmt.Fprintf(h, "%s=%s\n", p.Name, p.Value.String())
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// runJob runs call, which queues a job on unit, and waits for its result;
// anything but "done" is an error naming the unit.
func (b *Backend) runJob(ctx context.Context, unit string, call func() (int, error)) error {
	id, err := call()
	if err != nil {
		return err
	}
	result, _, err := b.w.job(ctx, unit, id)
	if err != nil {
		return fmt.Errorf("job on %s: %w", unit, err)
	}
	if result != "done" {
		return &jobError{unit: unit, result: result}
	}
	return nil
}

// jobError is a job that ended otherwise than "done".
type jobError struct {
	unit, result string
}

func (e *jobError) Error() string { return fmt.Sprintf("job on %s: %s", e.unit, e.result) }
