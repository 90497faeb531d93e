package systemd

import (
	"context"
	"fmt"
	"sync"

	godbus "github.com/godbus/dbus/v5"
)

// unitState is what the watcher knows of one unit, from its signals only.
type unitState struct {
	ActiveState string // "" until a signal said
	MainPID     int
	Result      string            // the service's Result=, e.g. "signal", "exit-code"
	ExecCode    int32             // ExecMainCode: 1 exited, 2 killed, 3 dumped
	ExecStatus  int32             // ExecMainStatus: exit status or signal number
	Removed     bool              // UnitRemoved seen and no UnitNew since
	jobs        map[uint32]string // results of ended jobs, by job id, until taken
}

// watcher follows units through the signals systemd sends on a connection
// of its own: PropertiesChanged (ActiveState, MainPID, Result), JobRemoved
// and UnitRemoved. Signals on one connection arrive in the order systemd
// sent them, and systemd sends a unit's pending property changes before
// the JobRemoved of a job on it, so when a job's result is seen the state
// beside it is the state the job left. Nothing is polled.
type watcher struct {
	conn Bus

	mu      sync.Mutex // protects units, changed, err
	units   map[string]*unitState
	changed chan struct{} // closed and replaced on every change
	err     error         // set when the connection is gone

	done chan struct{} // closed when run returns
}

// startWatcher subscribes to systemd's signals on conn and follows them
// until conn closes; ctx bounds the subscription calls.
func startWatcher(ctx context.Context, conn Bus) (*watcher, error) {
	w := &watcher{conn: conn, units: map[string]*unitState{}, changed: make(chan struct{}), done: make(chan struct{})}
	sigs := make(chan *godbus.Signal, 64)
	conn.Signal(sigs)
	for _, member := range []string{"JobRemoved", "UnitRemoved", "UnitNew"} {
		if err := conn.AddMatchSignalContext(ctx, godbus.WithMatchSender(busName), godbus.WithMatchInterface(ifaceManager), godbus.WithMatchMember(member)); err != nil {
			return nil, fmt.Errorf("subscribe to systemd's %s signals: %w", member, err)
		}
	}
	// systemd sends unit and job signals on the bus only while somebody is
	// subscribed.
	if err := conn.SubscribeSignals(ctx); err != nil {
		return nil, fmt.Errorf("subscribe to systemd's signals: %w", err)
	}
	go w.run(sigs)
	return w, nil
}

// watch starts following the unit name: its property changes from now on.
func (w *watcher) watch(ctx context.Context, name string) error {
	w.mu.Lock()
	if _, ok := w.units[name]; ok {
		w.mu.Unlock()
		return nil
	}
	w.units[name] = &unitState{jobs: map[uint32]string{}}
	w.mu.Unlock()
	err := w.conn.AddMatchSignalContext(ctx, godbus.WithMatchSender(busName), godbus.WithMatchObjectPath(unitPath(name)),
		godbus.WithMatchInterface(ifaceProps), godbus.WithMatchMember("PropertiesChanged"))
	if err != nil {
		return fmt.Errorf("watch unit %s: %w", name, err)
	}
	return nil
}

// unwatch stops following the unit name (a worker name given up: names
// are not reused, and the bus limits a connection's match rules).
func (w *watcher) unwatch(ctx context.Context, name string) {
	w.mu.Lock()
	_, ok := w.units[name]
	delete(w.units, name)
	w.mu.Unlock()
	if ok {
		w.conn.RemoveMatchSignalContext(ctx, godbus.WithMatchSender(busName), godbus.WithMatchObjectPath(unitPath(name)),
			godbus.WithMatchInterface(ifaceProps), godbus.WithMatchMember("PropertiesChanged"))
	}
}

// wait0 waits until the watcher's loop has ended: its connection was
// closed. (The back end closes the bus.)
func (w *watcher) wait0() { <-w.done }

func (w *watcher) run(sigs chan *godbus.Signal) {
	defer close(w.done)
	for s := range sigs {
		w.handle(s)
	}
	w.mu.Lock()
	w.err = fmt.Errorf("system bus connection closed")
	w.notifyLocked()
	w.mu.Unlock()
}

// handle applies one signal.
func (w *watcher) handle(s *godbus.Signal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s.Name {
	case ifaceManager + ".JobRemoved":
		var (
			id     uint32
			job    godbus.ObjectPath
			unit   string
			result string
		)
		if godbus.Store(s.Body, &id, &job, &unit, &result) != nil {
			return
		}
		if u := w.units[unit]; u != nil {
			if len(u.jobs) > 64 { // jobs others ran on the unit, never taken
				clear(u.jobs)
			}
			u.jobs[id] = result
			u.Removed = false
			w.notifyLocked()
		}
	case ifaceManager + ".UnitRemoved", ifaceManager + ".UnitNew":
		var (
			unit string
			path godbus.ObjectPath
		)
		if godbus.Store(s.Body, &unit, &path) != nil {
			return
		}
		if u := w.units[unit]; u != nil {
			u.Removed = s.Name == ifaceManager+".UnitRemoved"
			w.notifyLocked()
		}
	case ifaceProps + ".PropertiesChanged":
		var (
			iface   string
			changed map[string]godbus.Variant
			inval   []string
		)
		if godbus.Store(s.Body, &iface, &changed, &inval) != nil {
			return
		}
		var u *unitState
		for name, st := range w.units {
			if unitPath(name) == s.Path {
				u = st
				break
			}
		}
		if u == nil {
			return
		}
		// A unit that changes exists: systemd sends UnitRemoved for every
		// unit when it re-executes, then their properties again.
		u.Removed = false
		for k, v := range changed {
			switch {
			case iface == ifaceUnit && k == "ActiveState":
				v.Store(&u.ActiveState)
			case iface == ifaceService && k == "MainPID":
				var pid uint32
				if v.Store(&pid) == nil {
					u.MainPID = int(pid)
				}
			case iface == ifaceService && k == "Result":
				v.Store(&u.Result)
			case iface == ifaceService && k == "ExecMainCode":
				v.Store(&u.ExecCode)
			case iface == ifaceService && k == "ExecMainStatus":
				v.Store(&u.ExecStatus)
			}
		}
		w.notifyLocked()
	}
}

func (w *watcher) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// wait calls cond with the state of unit name (under the watcher's lock)
// until it returns true, then returns that state. It returns an error when
// ctx ends or the bus connection is gone.
func (w *watcher) wait(ctx context.Context, name string, cond func(*unitState) bool) (unitState, error) {
	for {
		w.mu.Lock()
		u := w.units[name]
		if u == nil {
			w.mu.Unlock()
			return unitState{}, fmt.Errorf("unit %s is not watched", name)
		}
		if cond(u) {
			st := *u
			w.mu.Unlock()
			return st, nil
		}
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return unitState{}, fmt.Errorf("follow unit %s: %w", name, err)
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return unitState{}, ctx.Err()
		}
	}
}

// job waits for the result of job id on unit name and returns it along
// with the unit's state when the job ended.
func (w *watcher) job(ctx context.Context, name string, id int) (string, unitState, error) {
	var result string
	st, err := w.wait(ctx, name, func(u *unitState) bool {
		r, ok := u.jobs[uint32(id)]
		if ok {
			result = r
			delete(u.jobs, uint32(id))
		}
		return ok
	})
	return result, st, err
}
