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

// Start implements spawner.Backend. A start while the name's worker still
// runs (a rolling restart, a recycle) makes the name's next unit pair, with
// a socket of its own, and leaves the serving pair alone: the new worker
// must be ready before the old one is stopped (the supervisor stops it,
// after the balancer drained it, and that gives its pair up), and a new
// pair that fails to start is stopped and given up while the old worker
// keeps serving. Any other start starts the current pair's service again
// (making the pair first, the first time, after clearing what a crashed
// berth left under the name), so that its socket and the requests waiting
// in it stay.
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
	sl, err := b.slot(spec)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if !sl.swept {
		if err := b.sweep(ctx, sl); err != nil {
			return nil, fmt.Errorf("start %s: %w", what, err)
		}
		sl.swept = true
	}

	p := sl.current()
	live := false
	if p != nil {
		p.mu.Lock()
		live = p.current != nil && !isClosed(p.current.done)
		p.mu.Unlock()
	}
	switch {
	case p == nil:
		if p, err = b.newPair(ctx, sl); err != nil {
			return nil, fmt.Errorf("start %s: %w", what, err)
		}
		sl.pmu.Lock()
		sl.cur = p
		sl.pmu.Unlock()
	case live:
		old := p
		if p, err = b.newPair(ctx, sl); err != nil {
			return nil, fmt.Errorf("start %s: %w", what, err)
		}
		b.log.Debug("starting worker in new units beside the serving ones", "unit", p.service, "serving", old.service)
	}
	p.mu.Lock()
	w, err := b.startIn(ctx, p, spec, what, began)
	p.mu.Unlock()
	if err != nil {
		if live {
			// The new pair goes; the serving one stays current.
			if gerr := b.giveUp(context.Background(), p, false); gerr != nil {
				b.log.Warn("give up worker units of a failed start", "unit", p.service, "err", gerr)
			}
		}
		return nil, err
	}
	sl.pmu.Lock()
	sl.cur = p
	sl.pmu.Unlock()
	return w, nil
}

// startIn starts a worker in pair p, whose previous worker (if any) has
// ended, making the units first if this berth has not. p.mu is held.
func (b *Backend) startIn(ctx context.Context, p *pair, spec spawner.Spec, what string, began time.Time) (*worker, error) {
	if p.created {
		// The socket unit must still be there: a socket whose service kept
		// failing to start may have given up.
		if err := b.runJob(ctx, p.socket, func() (int, error) { return b.bus.StartUnitContext(ctx, p.socket, "replace", nil) }); err != nil {
			b.log.Warn("worker socket unit gone; making the units again", "unit", p.socket, "err", err)
			p.created = false
		}
	}
	if !p.created {
		if err := b.create(ctx, p, spec); err != nil {
			return nil, fmt.Errorf("start %s: %w", what, err)
		}
		p.created = true
	}

	old := p.current
	var (
		result string
		st     unitState
	)
	for try := 1; ; try++ {
		b.bus.ResetFailedUnitContext(ctx, p.service) // a failed unit starts all the same; this only clears its start limit
		id, err := b.bus.StartUnitContext(ctx, p.service, "replace", nil)
		if err != nil {
			return nil, fmt.Errorf("start %s: start unit %s: %w", what, p.service, err)
		}
		result, st, err = b.w.job(ctx, p.service, id)
		if err != nil {
			if ctx.Err() != nil {
				err = spawner.NotReady(ctx.Err())
			}
			return nil, b.startFailed(p, spec, what, began, fmt.Errorf("start unit %s: %w", p.service, err))
		}
		if try > 1 || result == "done" || !setupFailed(st) {
			break
		}
		b.log.Warn("systemd could not set up the worker's unit before the app ran; starting it once more",
			"unit", p.service, "status", describe(st), "retry_in", setupRetryPause.String())
		select {
		case <-time.After(setupRetryPause):
		case <-ctx.Done():
			return nil, b.startFailed(p, spec, what, began, fmt.Errorf("start unit %s: %s: %w", p.service, describe(st), spawner.NotReady(ctx.Err())))
		}
	}
	if old != nil {
		// The previous worker of this pair is over: wait until its handle
		// says so, so that a late Stop on it cannot reach the new one.
		select {
		case <-old.done:
		case <-ctx.Done():
		}
	}
	if result != "done" || !isActive(st.ActiveState) || st.MainPID == 0 {
		return nil, fmt.Errorf("start %s: %w: unit %s: start job %s, %s%s", what, spawner.ErrExited, p.service, result, describe(st), b.tail(p.service, began))
	}
	w := &worker{b: b, p: p, spec: spec, pid: st.MainPID, done: make(chan struct{})}
	p.current = w
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		w.follow()
	}()
	b.log.Debug("worker unit started", "unit", p.service, "pid", w.pid)
	if spec.Started != nil {
		spec.Started(w.pid, func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			return b.cfg.Journal(ctx, p.service, began, b.cfg.TailLines)
		})
	}

	// READY=1 counts from the worker's process or another live process of
	// its unit.
	pid, err := spawner.ReadyWait{
		Readiness: p.ready,
		Accept:    func(pid int) bool { return pid == w.pid || inUnit(pid, p.service) },
		Exited:    w.done, ExitErr: func() error { return w.err },
		Probe: spec.Probe, Network: "unix", Addr: p.sockPath,
	}.Wait(ctx)
	if err != nil {
		return nil, b.startFailed(p, spec, what, began, err)
	}
	if pid == 0 {
		pid = w.pid
	}
	w.Liveness = p.ready.Liveness(pid)
	return w, nil
}

// setupRetryPause is how long a start waits before it starts a unit again
// whose setup systemd itself failed (setupFailed).
const setupRetryPause = 500 * time.Millisecond

// exitCgroup is systemd's exit status for a process it could not move into
// its unit's control group, before anything of the app ran (219/CGROUP,
// systemd.exec(5), "Process Exit Codes").
const exitCgroup = 219

// setupFailed reports whether a start failed in systemd's own setup of the
// unit in a way that a second try can get past: 219/CGROUP, seen when the
// unit's cgroup of a generation that just stopped is still being removed.
// The other codes systemd uses for its own failures (203/EXEC, 217/USER,
// 200/CHDIR, 226/NAMESPACE…) say what is wrong with the unit or the
// machine, and a second try would only repeat them.
func setupFailed(st unitState) bool {
	return st.ExecCode == 1 && st.ExecStatus == exitCgroup
}

// startFailed stops what a failed start left running and returns its
// error, quoting the worker's journal. p.mu is held.
func (b *Backend) startFailed(p *pair, spec spawner.Spec, what string, began time.Time, err error) error {
	if w := p.current; w != nil && !isClosed(w.done) {
		sctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout+5*time.Second)
		w.stopLocked(sctx)
		cancel()
	}
	return fmt.Errorf("start %s: %w%s", what, err, b.tail(p.service, began))
}

// create clears leftovers under the pair's unit names and makes the unit
// pair: the socket unit, started, with the service as its auxiliary unit.
func (b *Backend) create(ctx context.Context, p *pair, spec spawner.Spec) error {
	sl := p.sl
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
		"BERTH_READY_SOCKET="+p.ready.StreamPath,
		"NOTIFY_SOCKET="+p.ready.DgramPath,
	)
	uw := units.Worker{
		App: spec.App, Name: spec.Name, Gen: p.gen, Parent: b.cfg.Parent,
		Argv: argv, Dir: spec.Dir, Env: env,
		User: sl.user, Group: sl.group,
		Socket: p.sockPath, SocketUser: b.sockUser,
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
		reuse, err := b.clear(ctx, p, digest)
		if err != nil {
			return err
		}
		if reuse {
			return b.reuse(ctx, p, sockProps)
		}
		err = b.runJob(ctx, p.socket, func() (int, error) {
			return b.bus.StartTransientUnitAux(ctx, p.socket, "fail", sockProps, []sd.PropertyCollection{svc.Aux()}, nil)
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
			b.log.Warn("worker socket unit failed to start; trying again", "unit", p.socket)
			b.bus.ResetFailedUnitContext(ctx, p.socket)
			err = b.runJob(ctx, p.socket, func() (int, error) { return b.bus.StartUnitContext(ctx, p.socket, "replace", nil) })
		}
		if err != nil {
			return fmt.Errorf("make units %s and %s: %w", p.socket, p.service, err)
		}
		b.log.Debug("worker units made", "socket", p.socket, "service", p.service, "user", sl.user, "parent", b.cfg.Parent)
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
