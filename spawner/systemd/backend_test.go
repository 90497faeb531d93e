package systemd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/spawner"
)

// fakeApp is a worker process as the Node loader behaves: READY=1 on its
// readiness socket (the one of its unit's generation: w1.ready for
// berth-t-w1.service, w1-g2.ready for berth-t-w1-g2.service), then
// heartbeats, and OOB_DONE=1 for every OOB=1.
func fakeApp(t *testing.T, dir string, ready bool) func(unit string) {
	return func(unit string) {
		if !ready {
			return
		}
		base := strings.TrimSuffix(strings.TrimPrefix(unit, "berth-t-"), ".service")
		c, err := net.Dial("unix", filepath.Join(dir, base+".ready"))
		if err != nil {
			t.Logf("app: %v", err) // a start that counted an earlier READY=1 of this pid
			return
		}
		defer c.Close()
		c.Write([]byte("READY=1\nWATCHDOG=1\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if sc.Text() == "OOB=1" {
				c.Write([]byte("OOB_DONE=1\n"))
			}
		}
	}
}

func newTestBackend(t *testing.T, bus *fakeBus) (*Backend, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(context.Background(), Config{
		RuntimeDir: dir, Parent: "berth-test.service", User: me.Username,
		Bus:     func(context.Context) (Bus, error) { return bus, nil },
		Journal: func(context.Context, string, time.Time, int) []string { return []string{"Error: boom at start"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close(context.Background())
		bus.wg.Wait()
	})
	return b, dir
}

func testSpec(dir string) spawner.Spec {
	return spawner.Spec{App: "t", Name: "w1", Dir: dir, Argv: []string{"/bin/true"}, StopTimeout: time.Second}
}

func TestBackendStartStopRelease(t *testing.T) {
	bus := newFakeBus(os.Getpid())
	b, dir := newTestBackend(t, bus)
	bus.app = fakeApp(t, dir, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var started int
	spec := testSpec(dir)
	spec.Started = func(pid int, output func() []string) { started = pid }
	w, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(bus.Calls(), "; "), `StartTransientUnit berth-t-w1.socket aux berth-t-w1.service; StartUnit berth-t-w1.service`; got != want {
		t.Errorf("first start: calls %q, want %q", got, want)
	}
	if w.Name() != "w1" || w.(*worker).Unit() != "berth-t-w1.service" || w.Pid() != os.Getpid() || started != os.Getpid() {
		t.Errorf("worker name %q, unit %q, pid %d (Started got %d)", w.Name(), w.(*worker).Unit(), w.Pid(), started)
	}
	if u, err := w.Usage(ctx); err != nil || u.Memory != 64<<20 || u.CPU != 1500*time.Millisecond {
		t.Errorf("usage %+v, %v; want the unit's MemoryCurrent and CPUUsageNSec", u, err)
	}
	live := w.(spawner.Liveness)
	for live.LastHeartbeat().IsZero() {
		select {
		case <-ctx.Done():
			t.Fatal("no heartbeat recorded")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := live.OutOfBand(ctx); err != nil {
		t.Errorf("out-of-band: %v", err)
	}

	// Stop stops the process only: the socket unit stays for the next
	// start of the name.
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(bus.Calls(), "; "); got != "KillUnit berth-t-w1.service terminated" {
		t.Errorf("stop: calls %q", got)
	}
	select {
	case <-w.Done():
	default:
		t.Error("worker not done after Stop")
	}
	w, err = b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(bus.Calls(), "; "), "StartUnit berth-t-w1.socket; StartUnit berth-t-w1.service"; got != want {
		t.Errorf("second start: calls %q, want %q", got, want)
	}

	// Release gives the name up: the worker stopped, both units stopped,
	// the readiness sockets and match rules gone.
	if err := b.Release(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(bus.Calls(), "; "), "KillUnit berth-t-w1.service terminated; StopUnit berth-t-w1.service; StopUnit berth-t-w1.socket"; got != want {
		t.Errorf("release: calls %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "w1.ready")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readiness socket still there after Release: %v", err)
	}
	bus.mu.Lock()
	if bus.matches != 3 { // the manager's JobRemoved, UnitRemoved, UnitNew
		t.Errorf("%d match rules after Release, want the 3 of the manager", bus.matches)
	}
	bus.mu.Unlock()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if bus.Calls() != nil {
		t.Error("Close made calls for a released name")
	}
}

func TestBackendClearsLeftovers(t *testing.T) {
	bus := newFakeBus(os.Getpid())
	// A crashed berth's units, of the first generation and of a later
	// one (a rolling restart's); another worker's are left alone.
	for _, u := range []string{"berth-t-w1.socket", "berth-t-w1.service", "berth-t-w1-g4.socket", "berth-t-w1-g4.service", "berth-t-w12.service"} {
		bus.loaded[u] = true
	}
	b, dir := newTestBackend(t, bus)
	bus.app = fakeApp(t, dir, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Start(ctx, testSpec(dir)); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(bus.Calls(), "; ")
	want := "StopUnit berth-t-w1-g4.service; StopUnit berth-t-w1-g4.socket; " +
		"StopUnit berth-t-w1.socket; StopUnit berth-t-w1.service; StartTransientUnit berth-t-w1.socket aux berth-t-w1.service; StartUnit berth-t-w1.service"
	if got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(bus.Calls(), "; "), "KillUnit berth-t-w1.service terminated; StopUnit berth-t-w1.service; StopUnit berth-t-w1.socket"; got != want {
		t.Errorf("close: calls %q, want %q", got, want)
	}
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if !bus.closed {
		t.Error("Close left the bus open")
	}
}

func TestBackendStartFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing bool
		want    error
		calls   string
	}{
		{"exits", true, spawner.ErrExited, ""},
		{"never ready", false, spawner.ErrSpawnTimeout, "KillUnit berth-t-w1.service terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := newFakeBus(os.Getpid())
			bus.failing = tc.failing
			b, dir := newTestBackend(t, bus)
			bus.app = fakeApp(t, dir, false)
			defer b.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := b.Start(ctx, testSpec(dir))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "Error: boom at start") {
				t.Fatalf("start: %v; want %v, quoting the journal", err, tc.want)
			}
			calls := bus.Calls()
			if got := strings.Join(calls[2:], "; "); got != tc.calls {
				t.Errorf("calls after the start: %q, want %q", got, tc.calls)
			}
		})
	}
}

// TestBackendStartRetriesSystemdSetupFailure: a start that systemd failed
// with 219/CGROUP, its own failure before the app ran, is tried once more,
// and only once; an exit status of the app's own is not retried.
func TestBackendStartRetriesSystemdSetupFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failNext int
		status   int32
		starts   int   // StartUnit calls of the service
		want     error // nil: the worker runs
	}{
		{"cgroup once", 1, exitCgroup, 2, nil},
		{"cgroup twice", 2, exitCgroup, 2, spawner.ErrExited},
		{"app's own status", 1, 3, 1, spawner.ErrExited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := newFakeBus(os.Getpid())
			b, dir := newTestBackend(t, bus)
			bus.app = fakeApp(t, dir, true)
			defer b.Close(context.Background())
			bus.failNext, bus.failStatus = tc.failNext, tc.status
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			w, err := b.Start(ctx, testSpec(dir))
			starts := 0
			for _, c := range bus.Calls() {
				if c == "StartUnit berth-t-w1.service" || c == "StartTransientUnit berth-t-w1.service" {
					starts++
				}
			}
			if starts != tc.starts {
				t.Errorf("the service was started %d times, want %d", starts, tc.starts)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("start after one 219/CGROUP: %v", err)
				}
				if w.(*worker).Unit() != "berth-t-w1.service" {
					t.Errorf("worker runs in %s", w.(*worker).Unit())
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("exited with status %d", tc.status)) {
				t.Fatalf("start: %v; want %v saying the status", err, tc.want)
			}
		})
	}
}

// TestBackendLiveRestartMakesNewPair: a start in a slot whose worker still
// runs (a rolling restart, a recycle) makes the next generation's unit
// pair, with its own socket, and leaves the old pair alone until the old
// worker is stopped; a new pair that fails to start is removed and the old
// one keeps running.
func TestBackendLiveRestartMakesNewPair(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing bool // the new release exits at start
		ready   bool // the new release reports ready
		want    error
		cleanup string // calls after the failed start
	}{
		{"ready", false, true, nil, ""},
		{"exits", true, false, spawner.ErrExited, "StopUnit berth-t-w1-g2.service; StopUnit berth-t-w1-g2.socket"},
		{"never ready", false, false, spawner.ErrSpawnTimeout, "KillUnit berth-t-w1-g2.service terminated; StopUnit berth-t-w1-g2.service; StopUnit berth-t-w1-g2.socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := newFakeBus(os.Getpid())
			b, dir := newTestBackend(t, bus)
			bus.app = fakeApp(t, dir, true)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			spec := testSpec(dir)
			old, err := b.Start(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			bus.Calls()

			bus.mu.Lock()
			bus.failing = tc.failing
			bus.app = fakeApp(t, dir, tc.ready)
			bus.mu.Unlock()
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			nw, err := b.Start(sctx, spec)
			scancel()
			calls := strings.Join(bus.Calls(), "; ")
			if strings.Contains(calls, "berth-t-w1.") {
				t.Errorf("the start of a new worker touched the serving worker's units: %q", calls)
			}
			if isClosed(old.Done()) {
				t.Fatalf("the serving worker ended during the start of its replacement: %v", old.Err())
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "berth-t-w1-g2.service") {
					t.Fatalf("start of a broken release: %v; want %v naming the new unit", err, tc.want)
				}
				want := "StartTransientUnit berth-t-w1-g2.socket aux berth-t-w1-g2.service; StartUnit berth-t-w1-g2.service"
				if tc.cleanup != "" {
					want += "; " + tc.cleanup
				}
				if calls != want {
					t.Errorf("calls %q, want %q", calls, want)
				}
				for _, f := range []string{"w1-g2.ready", "w1-g2.notify"} {
					if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s still there after the failed start: %v", f, err)
					}
				}
				// The old worker still serves, and a fixed release is the
				// next generation.
				if n, a := old.Addr(); n != "unix" || a != filepath.Join(dir, "w1.sock") {
					t.Errorf("old worker's address %s %s", n, a)
				}
				bus.mu.Lock()
				bus.failing = false
				bus.app = fakeApp(t, dir, true)
				bus.mu.Unlock()
				if nw, err = b.Start(ctx, spec); err != nil {
					t.Fatalf("start of a fixed release: %v", err)
				}
				if u := nw.(*worker).Unit(); u != "berth-t-w1-g3.service" {
					t.Errorf("fixed release runs in %s, want berth-t-w1-g3.service", u)
				}
				bus.Calls()
			} else {
				if err != nil {
					t.Fatal(err)
				}
				want := "StartTransientUnit berth-t-w1-g2.socket aux berth-t-w1-g2.service; StartUnit berth-t-w1-g2.service"
				if calls != want {
					t.Errorf("calls %q, want %q", calls, want)
				}
				if n, a := nw.Addr(); n != "unix" || a != filepath.Join(dir, "w1-g2.sock") {
					t.Errorf("new worker's address %s %s, want its own socket", n, a)
				}
				if nw.Name() != "w1" || nw.(*worker).Unit() != "berth-t-w1-g2.service" {
					t.Errorf("new worker %q in unit %q", nw.Name(), nw.(*worker).Unit())
				}
			}

			// Stopping the old worker (after the balancer drained it)
			// stops and gives up its pair; the new one is untouched.
			if err := old.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(bus.Calls(), "; "), "KillUnit berth-t-w1.service terminated; StopUnit berth-t-w1.service; StopUnit berth-t-w1.socket"; got != want {
				t.Errorf("stop of the old worker: calls %q, want %q", got, want)
			}
			if isClosed(nw.Done()) {
				t.Errorf("new worker ended with the old one: %v", nw.Err())
			}
			if _, err := os.Stat(filepath.Join(dir, "w1.ready")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("old pair's readiness socket still there: %v", err)
			}

			// A crash of the new worker starts its pair again: the
			// socket, and requests waiting in it, stay.
			bus.mu.Lock()
			bus.endLocked(nw.(*worker).Unit())
			bus.mu.Unlock()
			<-nw.Done()
			again, err := b.Start(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			gen := strings.TrimSuffix(strings.TrimPrefix(nw.(*worker).Unit(), "berth-t-"), ".service")
			if got, want := strings.Join(bus.Calls(), "; "), "StartUnit berth-t-"+gen+".socket; StartUnit berth-t-"+gen+".service"; got != want {
				t.Errorf("start after a crash: calls %q, want %q", got, want)
			}
			if _, a := again.Addr(); a != filepath.Join(dir, gen+".sock") {
				t.Errorf("restarted worker's address %s, want %s.sock", a, gen)
			}

			if err := b.Release(ctx, "w1"); err != nil {
				t.Fatal(err)
			}
			bus.mu.Lock()
			if bus.matches != 3 {
				t.Errorf("%d match rules after Release, want the 3 of the manager", bus.matches)
			}
			bus.mu.Unlock()
		})
	}
}
