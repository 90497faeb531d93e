package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
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
	// w1.notify; w1-g2.sock, … for a later generation of w1's units).
	// Required. The back end makes it traversable by the
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
// and berth-APP-wN.service, over D-Bus; a rolling restart makes the next
// generation's pair (berth-APP-wN-g2.*) beside the serving one. Create it
// with New; Close it when berth stops for good.
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

// slot is one worker name (w1) of one app: the unit pairs made for it.
// Its current pair runs the worker in service, or is the one to start
// again after a crash; a start while that worker is live (a rolling
// restart, a recycle) makes a new pair, and the old one is given up when
// its worker is stopped.
type slot struct {
	app, name   string
	user, group string
	uid, gid    int

	mu    sync.Mutex // held through a Start, Release and Close: one start at a time; protects swept
	swept bool       // leftovers of every generation were stopped

	pmu   sync.Mutex // protects pairs, cur, gen; never held while taking a pair's mu
	pairs []*pair    // pairs made and not yet given up, oldest first
	cur   *pair      // nil before the first start
	gen   int        // the last generation made
}

// pair is one generation of a slot's units: the socket unit, the service
// unit, their socket path and readiness sockets, and the worker that runs
// (or ran last) in the service.
type pair struct {
	sl              *slot
	gen             int
	service, socket string // unit names
	sockPath        string
	ready           *spawner.Readiness

	mu      sync.Mutex // held through a start in the pair, a stop's kill and giving the pair up; protects created, current, gone
	created bool       // this berth made the units
	current *worker
	gone    bool // given up: units stopped, readiness closed
}

// current returns the slot's current pair (nil before the first start).
func (sl *slot) current() *pair {
	sl.pmu.Lock()
	defer sl.pmu.Unlock()
	return sl.cur
}

// all returns the slot's pairs.
func (sl *slot) all() []*pair {
	sl.pmu.Lock()
	defer sl.pmu.Unlock()
	return append([]*pair(nil), sl.pairs...)
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

// slot returns the slot of spec's worker, making it on first use.
func (b *Backend) slot(spec spawner.Spec) (*slot, error) {
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
	sl := &slot{app: spec.App, name: spec.Name, user: usr, group: grp, uid: uid, gid: gid}
	b.slots[spec.Name] = sl
	return sl, nil
}

// newPair makes the slot's next generation of units (names only: the units
// are made by create) with its readiness sockets, following its units.
// The caller holds sl.mu.
func (b *Backend) newPair(ctx context.Context, sl *slot) (*pair, error) {
	sl.pmu.Lock()
	sl.gen++
	gen := sl.gen
	sl.pmu.Unlock()
	base := filepath.Join(b.cfg.RuntimeDir, sl.name+units.WorkerGen(gen))
	p := &pair{
		sl: sl, gen: gen,
		service:  units.WorkerGenService(sl.app, sl.name, gen),
		socket:   units.WorkerGenSocket(sl.app, sl.name, gen),
		sockPath: base + ".sock",
	}
	for _, u := range []string{p.socket, p.service} {
		if err := b.w.watch(ctx, u); err != nil {
			b.unwatch(p)
			return nil, err
		}
	}
	var err error
	if p.ready, err = spawner.ListenReadiness(base+".ready", base+".notify", sl.uid, sl.gid); err != nil {
		b.unwatch(p)
		return nil, err
	}
	sl.pmu.Lock()
	sl.pairs = append(sl.pairs, p)
	sl.pmu.Unlock()
	return p, nil
}

func (b *Backend) unwatch(p *pair) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{p.service, p.socket} {
		b.w.unwatch(ctx, u)
	}
}

// Release implements spawner.Backend: it gives the worker name up. A
// worker still running under it is stopped; stop jobs are queued for the
// units of its every pair (without waiting: see worker.Stop) and their
// readiness sockets and match rules dropped.
func (b *Backend) Release(ctx context.Context, name string) error {
	b.mu.Lock()
	sl := b.slots[name]
	b.mu.Unlock()
	if sl == nil {
		return nil
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var errs []error
	for _, p := range sl.all() {
		errs = append(errs, b.giveUp(ctx, p, false))
	}
	b.mu.Lock()
	if b.slots[name] == sl {
		delete(b.slots, name)
	}
	b.mu.Unlock()
	return errors.Join(errs...)
}

// Close stops the workers' units, for good, and closes the bus
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
		for _, p := range sl.all() {
			errs = append(errs, b.giveUp(ctx, p, wait))
		}
		b.mu.Lock()
		if b.slots[sl.name] == sl {
			delete(b.slots, sl.name)
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

// giveUp stops the pair's worker if it still runs, queues stop jobs for
// its units (waiting for them if wait), closes its readiness sockets,
// drops its match rules and takes it from its slot. ctx bounds the
// worker's stop; the unit calls after it get 10 s even if ctx has ended,
// so that a late stop still stops the pair's socket. Giving up a pair
// twice does nothing.
func (b *Backend) giveUp(ctx context.Context, p *pair, wait bool) error {
	var errs []error
	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		return nil
	}
	if w := p.current; w != nil && !isClosed(w.done) {
		errs = append(errs, w.stopLocked(ctx))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if p.created {
		for _, u := range []string{p.service, p.socket} {
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
		p.created = false
	}
	p.ready.Close()
	p.gone = true
	p.mu.Unlock()
	// Stop jobs still to come on these units are not waited for.
	for _, u := range []string{p.service, p.socket} {
		b.w.unwatch(ctx, u)
	}
	sl := p.sl
	sl.pmu.Lock()
	sl.pairs = slices.DeleteFunc(sl.pairs, func(x *pair) bool { return x == p })
	if sl.cur == p {
		sl.cur = nil
	}
	sl.pmu.Unlock()
	return errors.Join(errs...)
}
