package systemd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"berth/spawner"
	"berth/units"
)

// Config configures the systemd back end. RuntimeDir is required; every
// other field's zero value is the default.
type Config struct {
	// RuntimeDir is where the worker sockets are made (w1.sock, w1.ready,
	// w1.notify). Required. The back end makes it traversable by the
	// workers' users (mode 0711), since they connect to their readiness
	// socket in it and read the Node loader from it.
	RuntimeDir string
	// Parent is berth's own unit, to which the workers' units are bound
	// (BindsTo=, PartOf=): systemd stops them when berth stops or dies. If
	// empty, the unit berth's own process runs in.
	Parent string
	// User runs the workers (User=). If empty, the owner of the app
	// directory; a root-owned app directory is an error unless User is
	// "root": workers never run as root unless asked.
	User string
	// Group runs the workers (Group=). If empty, User's primary group.
	Group string
	// MemoryMax, CPUQuota (percent of one CPU) and TasksMax limit each
	// worker. Zero means no limit (systemd's default for TasksMax).
	MemoryMax uint64
	CPUQuota  int
	TasksMax  uint64
	// NoSandbox turns off the workers' sandboxing (see units.Sandbox).
	NoSandbox bool
	// TailLines is how many lines of a worker's journal an error quotes.
	// If zero, 20.
	TailLines int
	// Log receives the back end's own messages. If nil, nothing is logged.
	Log *slog.Logger

	// Manager makes the D-Bus calls. If nil, New connects go-systemd to the
	// system bus, and Close closes it.
	Manager Manager
}

// Backend runs each worker as a transient unit pair, berth-APP-wN.socket
// and berth-APP-wN.service, over D-Bus. Create it with New; Close it when
// berth stops for good.
type Backend struct {
	cfg      Config
	mgr      Manager
	closeMgr func()
	w        *watcher
	log      *slog.Logger
	sockUser string

	ctx    context.Context // ends at Close: stops the goroutines that follow workers
	cancel context.CancelFunc

	mu    sync.Mutex // protects slots
	slots map[string]*slot
}

// slot is one worker name (w1) of one app: its units, its readiness
// sockets and the worker currently running in it.
type slot struct {
	app, name       string
	service, socket string // unit names
	sockPath        string
	user, group     string
	ready           *spawner.Readiness

	mu      sync.Mutex // held through a Start, Stop's kill and Close; protects created, current
	created bool       // this berth made the units
	current *worker
}

// New connects to systemd (unless cfg.Manager is given) and returns the
// back end. ctx bounds the setup calls; the connections live until Close.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.RuntimeDir == "" {
		return nil, errors.New("spawner/systemd: the systemd back end needs a runtime directory")
	}
	if cfg.TailLines == 0 {
		cfg.TailLines = 20
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(cfg.RuntimeDir)
	if err != nil {
		return nil, fmt.Errorf("spawner/systemd: runtime directory: %w", err)
	}
	if fi.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(cfg.RuntimeDir, fi.Mode().Perm()|0o711); err != nil {
			return nil, fmt.Errorf("spawner/systemd: let workers into the runtime directory: %w", err)
		}
	}
	b := &Backend{cfg: cfg, mgr: cfg.Manager, closeMgr: func() {}, log: log, slots: map[string]*slot{}}
	// The connections close when the context they were made with ends.
	b.ctx, b.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Backend, error) {
		b.cancel()
		return nil, err
	}
	if b.mgr == nil {
		conn, err := sd.NewSystemConnectionContext(b.ctx)
		if err != nil {
			return fail(fmt.Errorf("spawner/systemd: connect to systemd over the system bus: %w", err))
		}
		b.mgr, b.closeMgr = conn, conn.Close
	}
	if b.w, err = newWatcher(b.ctx, ctx); err != nil {
		b.closeMgr()
		return fail(fmt.Errorf("spawner/systemd: %w", err))
	}
	if b.cfg.Parent == "" {
		unit, err := b.mgr.GetUnitNameByPID(ctx, uint32(os.Getpid()))
		if err != nil {
			b.w.Close()
			b.closeMgr()
			return fail(fmt.Errorf("spawner/systemd: find berth's own unit, to bind the workers to (run berth as a service, see berth init, or use --spawner=exec): %w", err))
		}
		b.cfg.Parent = unit
	}
	b.sockUser = "root"
	if uid := os.Getuid(); uid != 0 {
		b.sockUser = strconv.Itoa(uid)
		if u, err := user.LookupId(b.sockUser); err == nil {
			b.sockUser = u.Username
		}
	}
	log.Debug("systemd back end ready", "parent", b.cfg.Parent)
	return b, nil
}

// Parent returns the unit the workers are bound to.
func (b *Backend) Parent() string { return b.cfg.Parent }

// slot returns the slot of spec's worker, making it (and its readiness
// sockets) on first use.
func (b *Backend) slot(ctx context.Context, spec spawner.Spec) (*slot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sl := b.slots[spec.Name]; sl != nil {
		return sl, nil
	}
	if err := units.CheckWorker(spec.Name); err != nil {
		return nil, err
	}
	if err := units.CheckName(spec.App); err != nil {
		return nil, err
	}
	usr, grp, uid, gid, err := b.workerUser(spec.Dir)
	if err != nil {
		return nil, err
	}
	sl := &slot{
		app: spec.App, name: spec.Name,
		service:  units.WorkerService(spec.App, spec.Name),
		socket:   units.WorkerSocket(spec.App, spec.Name),
		sockPath: filepath.Join(b.cfg.RuntimeDir, spec.Name+".sock"),
		user:     usr, group: grp,
	}
	for _, u := range []string{sl.socket, sl.service} {
		if err := b.w.watch(ctx, u); err != nil {
			return nil, err
		}
	}
	base := filepath.Join(b.cfg.RuntimeDir, spec.Name)
	if sl.ready, err = spawner.ListenReadiness(base+".ready", base+".notify", uid, gid); err != nil {
		return nil, err
	}
	b.slots[spec.Name] = sl
	return sl, nil
}

// workerUser resolves who runs the workers: cfg.User/Group, or the owner
// of the app directory and that user's primary group.
func (b *Backend) workerUser(dir string) (usr, grp string, uid, gid int, err error) {
	var u *user.User
	if b.cfg.User != "" {
		u, err = lookupUser(b.cfg.User)
		if err != nil {
			return "", "", 0, 0, fmt.Errorf("worker user %q: %w", b.cfg.User, err)
		}
	} else {
		fi, err := os.Stat(dir)
		if err != nil {
			return "", "", 0, 0, fmt.Errorf("app directory: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid == 0 {
			return "", "", 0, 0, fmt.Errorf("app directory %s is owned by root, and workers do not run as root unless asked: chown it to the app's user, or pass --user USER (--user root to really run them as root)", dir)
		}
		id := strconv.Itoa(int(st.Uid))
		if u, err = user.LookupId(id); err != nil {
			// An owner with no passwd entry: run as the bare uid.
			u = &user.User{Uid: id, Gid: strconv.Itoa(int(st.Gid)), Username: id}
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	usr, grp = u.Username, b.cfg.Group
	if grp != "" {
		g, err := user.LookupGroup(grp)
		if err != nil {
			if _, nerr := strconv.Atoi(grp); nerr != nil {
				return "", "", 0, 0, fmt.Errorf("worker group %q: %w", grp, err)
			}
			g = &user.Group{Gid: grp}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return usr, grp, uid, gid, nil
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, nerr := strconv.Atoi(name); nerr == nil {
		if u, err := user.LookupId(name); err == nil {
			return u, nil
		}
		return &user.User{Uid: name, Gid: name, Username: name}, nil
	}
	return nil, err
}

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
		if err := b.runJob(ctx, sl.socket, func() (int, error) { return b.mgr.StartUnitContext(ctx, sl.socket, "replace", nil) }); err != nil {
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
		id, err = b.mgr.RestartUnitContext(ctx, sl.service, "replace", nil)
	} else {
		b.mgr.ResetFailedUnitContext(ctx, sl.service) // a failed unit starts all the same; this only clears its start limit
		id, err = b.mgr.StartUnitContext(ctx, sl.service, "replace", nil)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: start unit %s: %w", what, sl.service, err)
	}
	result, st, err := b.w.job(ctx, sl.service, id)
	if err != nil {
		return nil, b.startFailed(ctx, sl, spec, what, began, fmt.Errorf("start unit %s: %w", sl.service, err))
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
	go w.follow()
	b.log.Debug("worker unit started", "unit", sl.service, "pid", w.pid)

	if err := b.waitReady(ctx, sl, w, spec); err != nil {
		return nil, b.startFailed(ctx, sl, spec, what, began, err)
	}
	return w, nil
}

// startFailed stops what a failed start left running and returns its
// error, quoting the worker's journal.
func (b *Backend) startFailed(ctx context.Context, sl *slot, spec spawner.Spec, what string, began time.Time, err error) error {
	if w := sl.current; w != nil && !isClosed(w.done) {
		sctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout+5*time.Second)
		w.stopLocked(sctx)
		cancel()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: the app never reported that it listens (did it call listen()?)", spawner.ErrSpawnTimeout)
	} else if errors.Is(err, context.Canceled) {
		err = fmt.Errorf("spawner: start canceled: %w", err)
	}
	return fmt.Errorf("start %s: %w%s", what, err, b.tail(sl.service, began))
}

// waitReady waits until the worker's process (or another process of its
// unit) reported READY=1, or (for an app that may not report) answers on
// its socket.
func (b *Backend) waitReady(ctx context.Context, sl *slot, w *worker, spec spawner.Spec) error {
	probed := make(chan struct{})
	if spec.Probe {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if spawner.Probe(pctx, "unix", sl.sockPath) {
				close(probed)
			}
		}()
	}
	for {
		pids, changed := sl.ready.ReadyFrom()
		for pid := range pids {
			if pid == w.pid || inUnit(pid, sl.service) {
				return nil
			}
		}
		select {
		case <-changed:
		case <-probed:
			return nil
		case <-w.done:
			return fmt.Errorf("%w (%v)", spawner.ErrExited, w.err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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
		MemoryMax: b.cfg.MemoryMax, CPUQuota: b.cfg.CPUQuota, TasksMax: b.cfg.TasksMax,
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
			return b.mgr.StartTransientUnitAux(ctx, sl.socket, "fail", sockProps, []sd.PropertyCollection{svc.Aux()}, nil)
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
			b.mgr.ResetFailedUnitContext(ctx, sl.socket)
			err = b.runJob(ctx, sl.socket, func() (int, error) { return b.mgr.StartUnitContext(ctx, sl.socket, "replace", nil) })
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

// leftoverGrace is how long clear waits for stopped leftover units to be
// collected before it considers reusing them.
const leftoverGrace = time.Second

// clear stops units that a crashed (or restarting) berth left under the
// slot's names and waits until systemd has collected them, so that they
// can be made anew. systemd keeps a stopped unit loaded while it cannot
// tell that its control group is empty (seen with cgroup v1 in a
// container); such a service is reused (reuse is true) when it carries the
// same settings digest, and waited for otherwise.
func (b *Backend) clear(ctx context.Context, sl *slot, digest string) (reuse bool, err error) {
	st, err := b.mgr.ListUnitsByNamesContext(ctx, []string{sl.socket, sl.service})
	if err != nil {
		return false, fmt.Errorf("look for leftover units %s, %s: %w", sl.socket, sl.service, err)
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
		err := b.runJob(ctx, u, func() (int, error) { return b.mgr.StopUnitContext(ctx, u, "replace", nil) })
		if err != nil && ctx.Err() != nil {
			return false, fmt.Errorf("stop leftover unit %s: %w", u, err)
		}
		b.mgr.ResetFailedUnitContext(ctx, u) // a failed unit is not collected before this
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
	if len(stay) == 1 && stay[0] == sl.service {
		p, err := b.mgr.GetServicePropertyContext(ctx, sl.service, "Environment")
		var env []string
		if err == nil && p.Value.Store(&env) == nil && slices.Contains(env, digestVar+"="+digest) {
			b.log.Info("reusing stopped worker unit that systemd keeps loaded", "unit", sl.service)
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

// reuse makes and starts the slot's socket unit for a service unit that is
// still loaded with the same settings.
func (b *Backend) reuse(ctx context.Context, sl *slot, sockProps []sd.Property) error {
	err := b.runJob(ctx, sl.socket, func() (int, error) {
		return b.mgr.StartTransientUnitAux(ctx, sl.socket, "fail", sockProps, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("make unit %s for the loaded %s: %w", sl.socket, sl.service, err)
	}
	return nil
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

// tail quotes the last lines the unit's processes wrote to the journal
// since since (the app's output, not systemd's or berth's messages about
// the unit).
func (b *Backend) tail(unit string, since time.Time) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "journalctl", "_SYSTEMD_UNIT="+unit, "--since=@"+strconv.FormatInt(since.Unix(), 10),
		"--lines="+strconv.Itoa(b.cfg.TailLines), "--output=cat", "--no-pager", "--quiet").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return fmt.Sprintf(" (it printed nothing; see journalctl -u %s)", unit)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return fmt.Sprintf("; its last output (journalctl -u %s):\n    %s", unit, strings.Join(lines, "\n    "))
}

// Close stops the workers' socket units, for good, and closes the bus
// connections. Workers still running are stopped first. When systemd is
// stopping berth's own unit, the stop jobs are queued behind it and Close
// does not wait for them.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	slots := make([]*slot, 0, len(b.slots))
	for _, sl := range b.slots {
		slots = append(slots, sl)
	}
	b.mu.Unlock()

	wait := true
	if st, err := b.mgr.ListUnitsByNamesContext(ctx, []string{b.cfg.Parent}); err == nil && len(st) == 1 && st[0].ActiveState == "deactivating" {
		wait = false
	}
	var errs []error
	for _, sl := range slots {
		sl.mu.Lock()
		if w := sl.current; w != nil && !isClosed(w.done) {
			if err := w.stopLocked(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if sl.created {
			for _, u := range []string{sl.service, sl.socket} {
				id, err := b.mgr.StopUnitContext(ctx, u, "replace", nil)
				if err != nil {
					errs = append(errs, fmt.Errorf("stop unit %s: %w", u, err))
					continue
				}
				if wait {
					if res, _, err := b.w.job(ctx, u, id); err != nil || res != "done" {
						errs = append(errs, fmt.Errorf("stop unit %s: %s %v", u, res, err))
					}
				}
			}
			sl.created = false
		}
		b.mu.Lock()
		if b.slots[sl.name] == sl {
			delete(b.slots, sl.name)
			sl.ready.Close()
		}
		b.mu.Unlock()
		sl.mu.Unlock()
	}
	b.cancel()
	b.w.Close()
	b.closeMgr()
	return errors.Join(errs...)
}

// retire gives up a slot whose worker is stopped: it queues stop jobs for
// its units (without waiting: see worker.Stop) and closes its readiness
// sockets. The slot's lock must be held.
func (b *Backend) retire(sl *slot) {
	if sl.created {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, u := range []string{sl.service, sl.socket} {
			if _, err := b.mgr.StopUnitContext(ctx, u, "replace", nil); err != nil {
				b.log.Warn("stop worker unit", "unit", u, "err", err)
			}
		}
		sl.created = false
	}
	b.mu.Lock()
	if b.slots[sl.name] == sl {
		delete(b.slots, sl.name)
		sl.ready.Close()
	}
	b.mu.Unlock()
	// Stop jobs still to come on these units are not waited for.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range []string{sl.service, sl.socket} {
		b.w.unwatch(ctx, u)
	}
}

// workerEnviron is berth's environment without what systemd set for berth
// itself (its sockets, its invocation, its directories, its user).
func workerEnviron(env []string) []string {
	drop := map[string]bool{
		"NOTIFY_SOCKET": true, "LISTEN_PID": true, "LISTEN_FDS": true, "LISTEN_FDNAMES": true,
		"INVOCATION_ID": true, "JOURNAL_STREAM": true, "WATCHDOG_PID": true, "WATCHDOG_USEC": true,
		"RUNTIME_DIRECTORY": true, "STATE_DIRECTORY": true, "CACHE_DIRECTORY": true, "LOGS_DIRECTORY": true,
		"CONFIGURATION_DIRECTORY": true, "CREDENTIALS_DIRECTORY": true, "MAINPID": true, "MANAGERPID": true,
		"SYSTEMD_EXEC_PID": true, "PIDFILE": true, "USER": true, "LOGNAME": true, "HOME": true, "SHELL": true,
		"BERTH_READY_SOCKET": true, "BERTH_APP": true, "BERTH_WORKER": true,
	}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && !strings.HasPrefix(k, "TRIGGER_") && !strings.HasPrefix(k, "MONITOR_") {
			out = append(out, kv)
		}
	}
	return out
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
