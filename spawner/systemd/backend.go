package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

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
	// MemoryHigh is each worker's MemoryHigh= (see units.Worker). Zero
	// means none.
	MemoryHigh uint64
	TasksMax   uint64
	// NoSandbox turns off the workers' sandboxing (see units.Sandbox).
	NoSandbox bool
	// TailLines is how many lines of a worker's journal an error quotes.
	// If zero, 20.
	TailLines int
	// Log receives the back end's own messages. If nil, nothing is logged.
	Log *slog.Logger

	// Bus connects to the system bus. If nil, DialSystemBus. Close
	// closes what it returned. Tests give a scripted fake.
	Bus func(ctx context.Context) (Bus, error)
	// Journal returns the last n lines unit's processes wrote since since,
	// oldest first. If nil, journalctl is asked.
	Journal func(ctx context.Context, unit string, since time.Time, n int) []string
}

// Backend runs each worker as a transient unit pair, berth-APP-wN.socket
// and berth-APP-wN.service, over D-Bus. Create it with New; Close it when
// berth stops for good.
type Backend struct {
	cfg      Config
	bus      Bus
	w        *watcher
	log      *slog.Logger
	sockUser string

	ctx    context.Context // ends at Close: stops the goroutines that follow workers
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers' follow goroutines; Close waits for them

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

	mu      sync.Mutex // held through a Start, a Stop's kill, Release and Close; protects created, current
	created bool       // this berth made the units
	current *worker
}

// New connects to the system bus (cfg.Bus) and returns the back end. ctx
// bounds the setup calls; the connection lives until Close.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.RuntimeDir == "" {
		return nil, errors.New("spawner/systemd: the systemd back end needs a runtime directory")
	}
	if cfg.TailLines == 0 {
		cfg.TailLines = 20
	}
	if cfg.Bus == nil {
		cfg.Bus = DialSystemBus
	}
	if cfg.Journal == nil {
		cfg.Journal = journalTail
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
	b := &Backend{cfg: cfg, log: log, slots: map[string]*slot{}}
	if b.bus, err = cfg.Bus(ctx); err != nil {
		return nil, fmt.Errorf("spawner/systemd: connect to systemd over the system bus: %w", err)
	}
	if b.w, err = startWatcher(ctx, b.bus); err != nil {
		b.bus.Close()
		return nil, fmt.Errorf("spawner/systemd: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.cfg.Parent == "" {
		unit, err := b.bus.GetUnitNameByPID(ctx, uint32(os.Getpid()))
		if err != nil {
			b.cancel()
			b.bus.Close()
			b.w.wait0()
			return nil, fmt.Errorf("spawner/systemd: find berth's own unit, to bind the workers to (run berth as a service, see berth init, or use --spawner=exec): %w", err)
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

// Release implements spawner.Backend: it gives the worker name up. A
// worker still running under it is stopped; stop jobs are queued for its
// units (without waiting: see worker.Stop) and its readiness sockets and
// match rules dropped.
func (b *Backend) Release(ctx context.Context, name string) error {
	b.mu.Lock()
	sl := b.slots[name]
	b.mu.Unlock()
	if sl == nil {
		return nil
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var err error
	if w := sl.current; w != nil && !isClosed(w.done) {
		err = w.stopLocked(ctx)
	}
	b.retireLocked(ctx, sl)
	return err
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
	if st, err := b.bus.ListUnitsByNamesContext(ctx, []string{b.cfg.Parent}); err == nil && len(st) == 1 && st[0].ActiveState == "deactivating" {
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
				id, err := b.bus.StopUnitContext(ctx, u, "replace", nil)
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
	b.wg.Wait() // the follow goroutines end with b.ctx
	if err := b.bus.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the system bus connection: %w", err))
	}
	b.w.wait0()
	return errors.Join(errs...)
}

// retireLocked gives up a slot whose worker is stopped: it queues stop
// jobs for its units (without waiting: see worker.Stop), closes its
// readiness sockets and drops its match rules. ctx (at most 10 s) bounds
// the calls. The slot's lock must be held.
func (b *Backend) retireLocked(ctx context.Context, sl *slot) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if sl.created {
		for _, u := range []string{sl.service, sl.socket} {
			if _, err := b.bus.StopUnitContext(ctx, u, "replace", nil); err != nil {
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
	for _, u := range []string{sl.service, sl.socket} {
		b.w.unwatch(ctx, u)
	}
}
