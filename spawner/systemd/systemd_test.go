package systemd

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"berth/units"
)

func testUnits(t *testing.T, mem uint64) units.Transient {
	t.Helper()
	tu, err := units.TransientUnits(units.Worker{
		App: "my-app", Name: "w1", Parent: "my-app.service",
		Argv: []string{"/usr/bin/node", "app.js"}, Dir: "/srv/my-app",
		User: "app", Socket: "/run/berth/my-app/w1.sock", MemoryMax: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tu
}

func TestUnitsDigest(t *testing.T) {
	a, b := unitsDigest(testUnits(t, 1<<20)), unitsDigest(testUnits(t, 1<<20))
	if a != b || len(a) != 16 {
		t.Errorf("digest of equal units: %q and %q, want equal, 16 hex digits", a, b)
	}
	if c := unitsDigest(testUnits(t, 2<<20)); c == a {
		t.Errorf("digest %q does not change with MemoryMax", c)
	}
}

func TestWorkerEnviron(t *testing.T) {
	in := []string{"PATH=/usr/bin", "LANG=C.UTF-8", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=1",
		"INVOCATION_ID=abc", "RUNTIME_DIRECTORY=/run/berth/x", "HOME=/root", "USER=root", "MONITOR_SERVICE_RESULT=x", "APP_MODE=production"}
	got := strings.Join(workerEnviron(in), " ")
	if want := "PATH=/usr/bin LANG=C.UTF-8 APP_MODE=production"; got != want {
		t.Errorf("workerEnviron = %q, want %q", got, want)
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   unitState
		want string
	}{
		{"exit", unitState{ExecCode: 1, ExecStatus: 3, Result: "exit-code"}, "exited with status 3 (result exit-code)"},
		{"signal", unitState{ExecCode: 2, ExecStatus: 9, Result: "signal"}, "killed by signal 9 (killed) (result signal)"},
		{"unknown", unitState{}, "ended (result unknown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(tc.st); got != tc.want {
				t.Errorf("describe = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInUnit(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	var mine string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i := strings.LastIndex(line, "/"); i >= 0 && i < len(line)-1 {
			mine = line[i+1:]
			break
		}
	}
	if mine == "" {
		t.Skip("this process runs in a root control group")
	}
	if !inUnit(os.Getpid(), mine) {
		t.Errorf("inUnit(self, %q) = false", mine)
	}
	if inUnit(os.Getpid(), "berth-none-w1.service") {
		t.Error("inUnit(self, berth-none-w1.service) = true")
	}
	if inUnit(1<<30, mine) {
		t.Error("inUnit of a pid that does not exist = true")
	}
}

// newTestWatcher is a watcher without a bus: the test feeds it signals.
func newTestWatcher(names ...string) *watcher {
	w := &watcher{units: map[string]*unitState{}, changed: make(chan struct{}), done: make(chan struct{})}
	for _, n := range names {
		w.units[n] = &unitState{jobs: map[uint32]string{}}
	}
	return w
}

func propsSignal(unit, iface string, props map[string]any) *godbus.Signal {
	changed := map[string]godbus.Variant{}
	for k, v := range props {
		changed[k] = godbus.MakeVariant(v)
	}
	return &godbus.Signal{
		Path: unitPath(unit),
		Name: ifaceProps + ".PropertiesChanged",
		Body: []any{iface, changed, []string{}},
	}
}

func TestWatcherFollowsSignals(t *testing.T) {
	const svc = "berth-my\\x2dapp-w1.service"
	w := newTestWatcher(svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got := make(chan string, 1)
	go func() {
		result, st, err := w.job(ctx, svc, 7)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- fmt.Sprintf("%s %s %d", result, st.ActiveState, st.MainPID)
	}()
	// The order systemd sends them in: the service's properties, the
	// unit's, then the job's end.
	w.handle(propsSignal(svc, ifaceService, map[string]any{"MainPID": uint32(42), "Result": "success"}))
	w.handle(propsSignal(svc, ifaceUnit, map[string]any{"ActiveState": "active"}))
	w.handle(propsSignal("other.service", ifaceUnit, map[string]any{"ActiveState": "failed"}))
	w.handle(&godbus.Signal{Name: ifaceManager + ".JobRemoved", Body: []any{uint32(6), godbus.ObjectPath("/j/6"), svc, "canceled"}})
	w.handle(&godbus.Signal{Name: ifaceManager + ".JobRemoved", Body: []any{uint32(7), godbus.ObjectPath("/j/7"), svc, "done"}})
	if g := <-got; g != "done active 42" {
		t.Fatalf("job 7: %q, want result done with the unit active, pid 42", g)
	}

	// The worker's exit, as a worker's follow waits for it.
	ended := make(chan unitState, 1)
	go func() {
		st, _ := w.wait(ctx, svc, func(u *unitState) bool { return u.MainPID != 42 || !isActive(u.ActiveState) })
		ended <- st
	}()
	w.handle(propsSignal(svc, ifaceService, map[string]any{"MainPID": uint32(0), "Result": "signal", "ExecMainCode": int32(2), "ExecMainStatus": int32(9)}))
	st := <-ended
	if d := describe(st); d != "killed by signal 9 (killed) (result signal)" {
		t.Errorf("exit described as %q", d)
	}

	w.handle(&godbus.Signal{Name: ifaceManager + ".UnitRemoved", Body: []any{svc, unitPath(svc)}})
	if st, err := w.wait(ctx, svc, func(u *unitState) bool { return u.Removed }); err != nil || !st.Removed {
		t.Errorf("UnitRemoved not seen: %v", err)
	}
	// systemd re-executing: every unit removed, then its properties again.
	w.handle(propsSignal(svc, ifaceUnit, map[string]any{"ActiveState": "inactive"}))
	if st, _ := w.wait(ctx, svc, func(*unitState) bool { return true }); st.Removed {
		t.Error("a unit whose properties change still counts as removed")
	}
	w.handle(&godbus.Signal{Name: ifaceManager + ".UnitRemoved", Body: []any{svc, unitPath(svc)}})
	w.handle(&godbus.Signal{Name: ifaceManager + ".UnitNew", Body: []any{svc, unitPath(svc)}})
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := w.wait(short, svc, func(u *unitState) bool { return u.Removed }); err == nil {
		t.Error("a unit made again still counts as removed")
	}
	if _, err := w.wait(ctx, "unwatched.service", func(*unitState) bool { return true }); err == nil {
		t.Error("wait on an unwatched unit returned no error")
	}
}
