package systemd

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"syscall"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// fakeBus is a scripted systemd: each call sends the signals systemd
// would, in systemd's order (a unit's PropertiesChanged before the
// JobRemoved of the job on it), on the one signal channel.
type fakeBus struct {
	mu      sync.Mutex // protects all below
	sigs    chan<- *godbus.Signal
	job     uint32
	calls   []string
	loaded  map[string]bool // units systemd has loaded
	env     []string        // Environment of a loaded leftover service
	pid     int             // MainPID a started service gets
	failing bool            // service starts fail
	// failNext service starts fail (before failing is looked at), each
	// with systemd's exit status failStatus: a failure of systemd's own
	// setup of the unit.
	failNext   int
	failStatus int32
	matches    int // match rules in place
	closed     bool
	// app, if set, runs (in a goroutine) when a service starts: the
	// worker's process as the test scripts it.
	app func(unit string)
	wg  sync.WaitGroup // the app goroutines
}

func newFakeBus(pid int) *fakeBus { return &fakeBus{loaded: map[string]bool{}, pid: pid} }

func (f *fakeBus) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls returns the calls made so far, and forgets them.
func (f *fakeBus) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeBus) sendLocked(s *godbus.Signal) {
	if !f.closed {
		f.sigs <- s
	}
}

func (f *fakeBus) propsLocked(unit, iface string, props map[string]any) {
	changed := map[string]godbus.Variant{}
	for k, v := range props {
		changed[k] = godbus.MakeVariant(v)
	}
	f.sendLocked(&godbus.Signal{Path: unitPath(unit), Name: ifaceProps + ".PropertiesChanged", Body: []any{iface, changed, []string{}}})
}

func (f *fakeBus) jobLocked(unit, result string) int {
	f.job++
	f.sendLocked(&godbus.Signal{Name: ifaceManager + ".JobRemoved", Body: []any{f.job, godbus.ObjectPath(fmt.Sprintf("/job/%d", f.job)), unit, result}})
	return int(f.job)
}

// startLocked runs a start job on unit.
func (f *fakeBus) startLocked(unit string) int {
	f.loaded[unit] = true
	if strings.HasSuffix(unit, ".service") {
		status := int32(3)
		fail := f.failing
		if f.failNext > 0 {
			f.failNext--
			fail, status = true, f.failStatus
		}
		if fail {
			f.propsLocked(unit, ifaceService, map[string]any{"MainPID": uint32(0), "Result": "exit-code", "ExecMainCode": int32(1), "ExecMainStatus": status})
			f.propsLocked(unit, ifaceUnit, map[string]any{"ActiveState": "failed"})
			return f.jobLocked(unit, "failed")
		}
		f.propsLocked(unit, ifaceService, map[string]any{"MainPID": uint32(f.pid)})
		f.propsLocked(unit, ifaceUnit, map[string]any{"ActiveState": "active"})
		if app := f.app; app != nil {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				app(unit)
			}()
		}
	} else {
		f.propsLocked(unit, ifaceUnit, map[string]any{"ActiveState": "active"})
	}
	return f.jobLocked(unit, "done")
}

// endLocked ends unit's process.
func (f *fakeBus) endLocked(unit string) {
	if strings.HasSuffix(unit, ".service") {
		f.propsLocked(unit, ifaceService, map[string]any{"MainPID": uint32(0), "Result": "success", "ExecMainCode": int32(2), "ExecMainStatus": int32(15)})
	}
	f.propsLocked(unit, ifaceUnit, map[string]any{"ActiveState": "inactive"})
}

func (f *fakeBus) StartTransientUnitAux(ctx context.Context, name, mode string, props []sd.Property, aux []sd.PropertyCollection, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, a := range aux {
		names = append(names, a.Name)
		f.loaded[a.Name] = true
	}
	f.record("StartTransientUnit %s aux %s", name, strings.Join(names, " "))
	if f.loaded[name] {
		return 0, godbus.Error{Name: "org.freedesktop.systemd1.UnitExists"}
	}
	return f.startLocked(name), nil
}

func (f *fakeBus) StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StartUnit %s", name)
	return f.startLocked(name), nil
}

func (f *fakeBus) StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StopUnit %s", name)
	f.endLocked(name)
	id := f.jobLocked(name, "done")
	delete(f.loaded, name)
	f.sendLocked(&godbus.Signal{Name: ifaceManager + ".UnitRemoved", Body: []any{name, unitPath(name)}})
	return id, nil
}

func (f *fakeBus) KillUnitWithTarget(ctx context.Context, name string, target sd.Who, signal int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("KillUnit %s %v", name, syscall.Signal(signal))
	f.endLocked(name)
	return nil
}

func (f *fakeBus) ResetFailedUnitContext(ctx context.Context, name string) error {
	return nil
}

func (f *fakeBus) ListUnitsByNamesContext(ctx context.Context, names []string) ([]sd.UnitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st []sd.UnitStatus
	for _, n := range names {
		s := sd.UnitStatus{Name: n, LoadState: "not-found", ActiveState: "inactive"}
		if f.loaded[n] {
			s.LoadState, s.ActiveState = "loaded", "active"
		}
		st = append(st, s)
	}
	return st, nil
}

// ListUnitsByPatternsContext lists the loaded units whose names match a
// pattern (fnmatch with FNM_NOESCAPE, as systemd), in any state.
func (f *fakeBus) ListUnitsByPatternsContext(ctx context.Context, states, patterns []string) ([]sd.UnitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st []sd.UnitStatus
	for n := range f.loaded {
		for _, p := range patterns {
			if ok, _ := path.Match(strings.ReplaceAll(p, `\`, `\\`), n); ok {
				st = append(st, sd.UnitStatus{Name: n, LoadState: "loaded", ActiveState: "active"})
				break
			}
		}
	}
	return st, nil
}

func (f *fakeBus) GetUnitNameByPID(ctx context.Context, pid uint32) (string, error) {
	return "berth-test.service", nil
}

func (f *fakeBus) GetServicePropertyContext(ctx context.Context, service, name string) (*sd.Property, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch name {
	case "Environment":
		return &sd.Property{Name: name, Value: godbus.MakeVariant(f.env)}, nil
	case "MemoryCurrent":
		return &sd.Property{Name: name, Value: godbus.MakeVariant(uint64(64 << 20))}, nil
	case "CPUUsageNSec":
		return &sd.Property{Name: name, Value: godbus.MakeVariant(uint64(1500000000))}, nil
	}
	return nil, fmt.Errorf("no property %s", name)
}

func (f *fakeBus) Signal(ch chan<- *godbus.Signal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sigs = ch
}

func (f *fakeBus) AddMatchSignalContext(ctx context.Context, options ...godbus.MatchOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.matches++
	return nil
}

func (f *fakeBus) RemoveMatchSignalContext(ctx context.Context, options ...godbus.MatchOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.matches--
	return nil
}

func (f *fakeBus) SubscribeSignals(ctx context.Context) error { return nil }

func (f *fakeBus) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.sigs)
	}
	return nil
}
