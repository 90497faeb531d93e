package units

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"berth/packaging/systemdtest"
)

var machine systemdtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := machine.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func testWorker() Worker {
	return Worker{
		App:         "my-app",
		Name:        "w1",
		Parent:      "units-parent.service",
		Argv:        []string{"/usr/local/bin/units-worker", "--flag"},
		Dir:         "/srv/my-app",
		Env:         []string{"EXTRA=a b"},
		User:        "nobody",
		Socket:      "/run/berth/my-app/w1.sock",
		MemoryMax:   256 << 20,
		CPUQuota:    50,
		TasksMax:    64,
		StopTimeout: 5 * time.Second,
	}
}

// props maps a property list by name, failing on duplicates.
func props(t *testing.T, ps []sd.Property) map[string]godbus.Variant {
	t.Helper()
	m := make(map[string]godbus.Variant)
	for _, p := range ps {
		if _, dup := m[p.Name]; dup {
			t.Errorf("property %s set twice", p.Name)
		}
		m[p.Name] = p.Value
	}
	return m
}

func TestTransientUnits(t *testing.T) {
	u, err := TransientUnits(testWorker())
	if err != nil {
		t.Fatal(err)
	}
	if u.Service.Name != `berth-my\x2dapp-w1.service` || u.Socket.Name != `berth-my\x2dapp-w1.socket` {
		t.Errorf("unit names %q, %q", u.Service.Name, u.Socket.Name)
	}
	// The D-Bus signature of each property is what systemd checks; a wrong
	// one fails StartTransientUnit with "Invalid argument".
	tests := []struct {
		unit      Unit
		name, sig string
		value     string // fmt %v of the value, "" to skip
	}{
		{u.Service, "Type", "s", "exec"},
		{u.Service, "ExecStart", "a(sasb)", "[{/usr/local/bin/units-worker [/usr/local/bin/units-worker --flag] false}]"},
		{u.Service, "WorkingDirectory", "s", "/srv/my-app"},
		{u.Service, "Environment", "as", "[BERTH_APP=my-app BERTH_WORKER=w1 EXTRA=a b]"},
		{u.Service, "Slice", "s", `berth-my\x2dapp.slice`},
		{u.Service, "SyslogIdentifier", "s", "my-app"},
		{u.Service, "User", "s", "nobody"},
		{u.Service, "BindsTo", "as", "[units-parent.service]"},
		{u.Service, "PartOf", "as", "[units-parent.service]"},
		{u.Service, "Before", "as", "[units-parent.service]"},
		{u.Service, "CollectMode", "s", "inactive-or-failed"},
		{u.Service, "MemoryMax", "t", "268435456"},
		{u.Service, "CPUQuotaPerSecUSec", "t", "500000"},
		{u.Service, "TasksMax", "t", "64"},
		{u.Service, "TimeoutStopUSec", "t", "5000000"},
		{u.Service, "NoNewPrivileges", "b", "true"},
		{u.Service, "ProtectSystem", "s", "full"},
		{u.Service, "ProtectHome", "s", "yes"},
		{u.Service, "RestrictAddressFamilies", "(bas)", ""},
		{u.Service, "SystemCallFilter", "(bas)", ""},
		{u.Service, "CapabilityBoundingSet", "t", "0"},
		{u.Socket, "Listen", "a(ss)", "[{Stream /run/berth/my-app/w1.sock}]"},
		{u.Socket, "Before", "as", "[units-parent.service]"},
		{u.Socket, "SocketMode", "u", "384"},
		{u.Socket, "FileDescriptorName", "s", "berth"},
		{u.Socket, "RemoveOnStop", "b", "true"},
		{u.Socket, "BindsTo", "as", "[units-parent.service]"},
	}
	svc, sock := props(t, u.Service.Properties), props(t, u.Socket.Properties)
	for _, tt := range tests {
		m := svc
		if tt.unit.Name == u.Socket.Name {
			m = sock
		}
		v, ok := m[tt.name]
		if !ok {
			t.Errorf("%s: no %s", tt.unit.Name, tt.name)
			continue
		}
		if got := v.Signature().String(); got != tt.sig {
			t.Errorf("%s %s: signature %s, want %s", tt.unit.Name, tt.name, got, tt.sig)
		}
		if got := fmt.Sprint(v.Value()); tt.value != "" && got != tt.value {
			t.Errorf("%s %s = %s, want %s", tt.unit.Name, tt.name, got, tt.value)
		}
	}
	if _, ok := svc["Group"]; ok {
		t.Error("Group set though Worker.Group is empty")
	}
	if _, ok := sock["SocketUser"]; ok {
		t.Error("SocketUser set though Worker.SocketUser is empty")
	}
	if _, ok := svc["After"]; ok {
		t.Error("After= set: it would hold the worker until its Type=notify parent is ready")
	}
}

func TestTransientUnitsOptions(t *testing.T) {
	t.Run("no sandbox", func(t *testing.T) {
		w := testWorker()
		w.NoSandbox = true
		u, err := TransientUnits(w)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range u.Service.Properties {
			for _, s := range Sandbox(w.Dir, false) {
				if p.Name == s.Name {
					t.Errorf("NoSandbox worker has %s", p.Name)
				}
			}
		}
	})
	t.Run("app in a home directory", func(t *testing.T) {
		w := testWorker()
		w.Dir = "/home/alice/app"
		u, err := TransientUnits(w)
		if err != nil {
			t.Fatal(err)
		}
		m := props(t, u.Service.Properties)
		if got := m["ProtectHome"].Value(); got != "read-only" {
			t.Errorf("ProtectHome = %v, want read-only", got)
		}
		if got := fmt.Sprint(m["ReadWritePaths"].Value()); got != "[/home/alice/app]" {
			t.Errorf("ReadWritePaths = %v, want [/home/alice/app]", got)
		}
	})
	t.Run("socket user", func(t *testing.T) {
		for user, want := range map[string]string{"": "", "root": "", "berth": "berth"} {
			w := testWorker()
			w.SocketUser = user
			u, err := TransientUnits(w)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if v, ok := props(t, u.Socket.Properties)["SocketUser"]; ok {
				got = v.Value().(string)
			}
			if got != want {
				t.Errorf("SocketUser %q gives SocketUser=%q, want %q", user, got, want)
			}
		}
	})
	t.Run("root worker keeps capabilities", func(t *testing.T) {
		w := testWorker()
		w.User = "root"
		u, err := TransientUnits(w)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := props(t, u.Service.Properties)["CapabilityBoundingSet"]; ok {
			t.Error("root worker has CapabilityBoundingSet")
		}
	})
	t.Run("no limits by default", func(t *testing.T) {
		w := testWorker()
		w.MemoryMax, w.CPUQuota, w.TasksMax, w.StopTimeout = 0, 0, 0, 0
		u, err := TransientUnits(w)
		if err != nil {
			t.Fatal(err)
		}
		m := props(t, u.Service.Properties)
		for _, name := range []string{"MemoryMax", "CPUQuotaPerSecUSec", "TasksMax", "TimeoutStopUSec"} {
			if _, ok := m[name]; ok {
				t.Errorf("%s set without a limit asked for", name)
			}
		}
	})
}

func TestTransientUnitsErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Worker)
		want   string
	}{
		{"bad app", func(w *Worker) { w.App = "my app" }, "invalid app name"},
		{"bad worker", func(w *Worker) { w.Name = "w-1" }, "invalid worker name"},
		{"no parent", func(w *Worker) { w.Parent = "" }, "no parent unit"},
		{"no command", func(w *Worker) { w.Argv = nil }, "empty command"},
		{"relative command", func(w *Worker) { w.Argv = []string{"node", "app.js"} }, `command "node" is not an absolute path`},
		{"relative dir", func(w *Worker) { w.Dir = "app" }, "working directory"},
		{"relative socket", func(w *Worker) { w.Socket = "w1.sock" }, "socket"},
		{"bad env", func(w *Worker) { w.Env = []string{"NOEQUALS"} }, "not KEY=VALUE"},
		{"negative quota", func(w *Worker) { w.CPUQuota = -1 }, "negative CPU quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := testWorker()
			tt.change(&w)
			_, err := TransientUnits(w)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TransientUnits error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestTransientUnitsOnSystemd starts a worker's unit pair on a real systemd,
// through its system bus, the way the systemd spawner does, and checks what
// systemd made of every property.
func TestTransientUnitsOnSystemd(t *testing.T) {
	m := machine.Machine(t)
	ctx := t.Context()

	helper := buildWorker(t)
	if err := m.CopyFile(ctx, helper, "/usr/local/bin/units-worker"); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "mkdir", "-p", "/srv/my-app")
	m.MustRun(t, "systemd-run", "--unit=units-parent", "sleep", "infinity")

	conn := dialContainerBus(t, m)
	w := testWorker()
	u, err := TransientUnits(w)
	if err != nil {
		t.Fatal(err)
	}
	startTransient(t, conn, u)

	// systemd made the socket; a connection starts the worker service.
	sockPath := fmt.Sprintf("/proc/%d/root%s", m.PID(), w.Socket)
	c, err := net.DialTimeout("unix", sockPath, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil {
		t.Fatalf("read from the worker: %v\n%s", err, m.MustRun(t, "journalctl", "-u", u.Service.Name, "--no-pager"))
	}
	nobody := strings.TrimSpace(m.MustRun(t, "id", "-u", "nobody"))
	if want := "uid=" + nobody + " cwd=/srv/my-app app=my-app worker=w1 fds=1 names=berth extra=a b\n"; line != want {
		t.Errorf("worker said %q, want %q", line, want)
	}

	show := func(unit string, names ...string) map[string]string {
		out := m.MustRun(t, "systemctl", "show", unit, "-p", strings.Join(names, ","))
		kv := make(map[string]string)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(l, "=")
			kv[k] = v
		}
		return kv
	}
	want := map[string]string{
		"User": "nobody", "WorkingDirectory": "/srv/my-app", "Slice": `berth-my\x2dapp.slice`,
		"SyslogIdentifier": "my-app", "MemoryMax": "268435456", "CPUQuotaPerSecUSec": "500ms",
		"TasksMax": "64", "TimeoutStopUSec": "5s", "BindsTo": "units-parent.service",
		"CollectMode": "inactive-or-failed", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
		"ProtectSystem": "full", "ProtectHome": "yes", "RestrictNamespaces": "yes",
		"SystemCallArchitectures": "native", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_NETLINK AF_UNIX",
		"CapabilityBoundingSet": "",
	}
	var names []string
	for k := range want {
		names = append(names, k)
	}
	got := show(u.Service.Name, names...)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s %s=%q, want %q", u.Service.Name, k, got[k], v)
		}
	}
	sock := show(u.Socket.Name, "SocketMode", "SocketUser", "FileDescriptorName", "RemoveOnStop", "BindsTo", "Listen")
	for k, v := range map[string]string{
		"SocketMode": "0600", "SocketUser": "", "FileDescriptorName": "berth", "RemoveOnStop": "yes",
		"BindsTo": "units-parent.service", "Listen": w.Socket + " (Stream)",
	} {
		if sock[k] != v {
			t.Errorf("%s %s=%q, want %q", u.Socket.Name, k, sock[k], v)
		}
	}
	if _, err := m.WaitJournal(ctx, "worker: served one connection", "-t", "my-app"); err != nil {
		t.Errorf("the worker's output is not in the journal under its SyslogIdentifier: %v", err)
	}
	if got := strings.TrimSpace(m.MustRun(t, "stat", "-c", "%a %U", w.Socket)); got != "600 root" {
		t.Errorf("socket file is %q, want 600 root", got)
	}

	// Stopping the parent stops and collects the worker's units.
	m.MustRun(t, "systemctl", "stop", "units-parent.service")
	for _, unit := range []string{u.Socket.Name, u.Service.Name} {
		out, _ := m.Run(ctx, "systemctl", "show", unit, "-p", "LoadState,ActiveState")
		if !strings.Contains(out, "ActiveState=inactive") {
			t.Errorf("%s after its parent stopped: %s", unit, out)
		}
	}
	if _, err := m.Run(ctx, "test", "-e", w.Socket); err == nil {
		t.Errorf("%s is left after its socket unit stopped", w.Socket)
	}
}

// buildWorker builds testdata/worker as a static binary and returns its path.
func buildWorker(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), "units-worker")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", out, "./testdata/worker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test worker: %v\n%s", err, b)
	}
	return out
}

// dialContainerBus connects to the container's system bus as root, through
// the host's view of its socket.
func dialContainerBus(t *testing.T, m *systemdtest.Machine) *godbus.Conn {
	t.Helper()
	addr := fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", m.PID())
	conn, err := godbus.Dial(addr, godbus.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Auth(nil); err != nil {
		t.Fatal(err)
	}
	if err := conn.Hello(); err != nil {
		t.Fatal(err)
	}
	return conn
}

// startTransient starts u.Socket with u.Service as auxiliary unit and
// waits for the job's result.
func startTransient(t *testing.T, conn *godbus.Conn, u Transient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := conn.AddMatchSignalContext(ctx,
		godbus.WithMatchInterface("org.freedesktop.systemd1.Manager"),
		godbus.WithMatchMember("JobRemoved")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *godbus.Signal, 16)
	conn.Signal(signals)
	defer conn.RemoveSignal(signals)
	obj := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	var job godbus.ObjectPath
	err := obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.StartTransientUnit", 0,
		u.Socket.Name, "fail", u.Socket.Properties, []sd.PropertyCollection{u.Service.Aux()}).Store(&job)
	if err != nil {
		t.Fatalf("StartTransientUnit %s: %v", u.Socket.Name, err)
	}
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("job %s for %s: %v", job, u.Socket.Name, ctx.Err())
		case s := <-signals:
			if s.Name != "org.freedesktop.systemd1.Manager.JobRemoved" || len(s.Body) < 4 || s.Body[1] != job {
				continue
			}
			if result := s.Body[3]; result != "done" {
				t.Fatalf("job for %s: %v", u.Socket.Name, result)
			}
			return
		}
	}
}

func TestTransientUnitsMemoryHigh(t *testing.T) {
	w := testWorker()
	w.MemoryHigh = 300 << 20
	u, err := TransientUnits(w)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := props(t, u.Service.Properties)["MemoryHigh"]; !ok || v.Value() != uint64(314572800) {
		t.Errorf("MemoryHigh property %v, want 314572800", v)
	}
	if _, ok := props(t, testUnitsNoHigh(t).Service.Properties)["MemoryHigh"]; ok {
		t.Error("MemoryHigh set without --memory-limit")
	}
}

func testUnitsNoHigh(t *testing.T) Transient {
	u, err := TransientUnits(testWorker())
	if err != nil {
		t.Fatal(err)
	}
	return u
}
