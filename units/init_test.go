package units

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"berth/packaging/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./units -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./units -update rewrites it):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestInitGolden(t *testing.T) {
	tests := []struct {
		dir  string
		init Init
	}{
		{dir: "system", init: Init{Name: "hello", AppDir: "/srv/hello", Port: 8080}},
		{dir: "user", init: Init{Name: "hello", AppDir: "/home/alice/hello", Port: 8080, Berth: "/home/alice/bin/berth", UserManager: true}},
		{dir: "home", init: Init{Name: "my-app", AppDir: "/home/alice/my app", Port: 80, ServeArgs: []string{"--workers", "4", "--env", "GREETING=hi there"}}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			files, err := tt.init.Files()
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 2 || files[0].Name != tt.init.Name+".socket" || files[1].Name != tt.init.Name+".service" {
				t.Fatalf("Files() returned %d files %v, want NAME.socket and NAME.service", len(files), files)
			}
			for _, f := range files {
				golden(t, filepath.Join(tt.dir, f.Name), f.Data)
			}
		})
	}
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name string
		init Init
		want string
	}{
		{name: "bad name", init: Init{Name: "my app", AppDir: "/srv/x", Port: 80}, want: "invalid app name"},
		{name: "relative dir", init: Init{Name: "x", AppDir: "srv/x", Port: 80}, want: "app directory \"srv/x\" is not an absolute path"},
		{name: "newline in dir", init: Init{Name: "x", AppDir: "/srv/x\nExecStartPre=/bin/evil", Port: 80}, want: "control character"},
		{name: "port zero", init: Init{Name: "x", AppDir: "/srv/x"}, want: "port 0 out of range"},
		{name: "port too big", init: Init{Name: "x", AppDir: "/srv/x", Port: 70000}, want: "port 70000 out of range"},
		{name: "newline in serve args", init: Init{Name: "x", AppDir: "/srv/x", Port: 80, ServeArgs: []string{"a\nb"}}, want: "control character"},
		{name: "relative berth", init: Init{Name: "x", AppDir: "/srv/x", Port: 80, Berth: "berth"}, want: "berth binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.init.Files()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Files() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestExecLine(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{argv: []string{"/usr/bin/berth", "serve", "/srv/x"}, want: "/usr/bin/berth serve /srv/x"},
		{argv: []string{"/b", "/srv/my app"}, want: `/b "/srv/my app"`},
		{argv: []string{"/b", "/srv/100%"}, want: "/b /srv/100%%"},
		{argv: []string{"/b", "/srv/$HOME"}, want: "/b /srv/$$HOME"},
		{argv: []string{"/b", `/srv/a"b\c`}, want: `/b "/srv/a\"b\\c"`},
		{argv: []string{"/b", ";"}, want: `/b ";"`},
	}
	for _, tt := range tests {
		if got := execLine(tt.argv...); got != tt.want {
			t.Errorf("execLine(%q) = %s, want %s", tt.argv, got, tt.want)
		}
	}
}

// TestInitOnSystemd installs the rendered units on a real systemd and checks
// that systemd-analyze verify accepts them, that systemd-analyze security
// rates the service 4.0 or better, and that the sandbox still lets berth do
// its job: start a transient unit over the system bus as another user,
// write its runtime directory, read its app directory, and nothing else.
func TestInitOnSystemd(t *testing.T) {
	m := machine.Machine(t)
	ctx := t.Context()

	in := Init{Name: "units-hello", AppDir: "/srv/units-hello", Port: testenv.FreePort(t)}
	files, err := in.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := m.WriteFile(ctx, "/etc/systemd/system/"+f.Name, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A stand-in for the berth binary, which verify checks is executable.
	if err := m.WriteFile(ctx, DefaultBerth, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(ctx, in.AppDir+"/app.js", []byte("// app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "systemctl", "daemon-reload")

	t.Run("verify", func(t *testing.T) {
		// --man=no: the berth(1) page comes with the package, not this test.
		out := m.MustRun(t, "systemd-analyze", "verify", "--man=no",
			"/etc/systemd/system/units-hello.socket", "/etc/systemd/system/units-hello.service")
		if strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify warns:\n%s", out)
		}
	})

	t.Run("security", func(t *testing.T) {
		out := m.MustRun(t, "systemd-analyze", "security", "--no-pager", "units-hello.service")
		exposure, err := parseExposure(out)
		if err != nil {
			t.Fatalf("%v in:\n%s", err, out)
		}
		t.Logf("README: `systemd-analyze security NAME.service` rates the unit berth init writes %.1f (systemd 252; 10 is fully exposed, 4.0 or lower is the goal).", exposure)
		if exposure > 4.0 {
			t.Errorf("exposure %.1f > 4.0:\n%s", exposure, out)
		}
	})

	// The same sandbox with a script in place of berth, via a drop-in.
	t.Run("sandbox lets berth work", func(t *testing.T) {
		script := `set -e
busctl call --system org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StartTransientUnit 'ssa(sv)a(sa(sv))' units-from-sandbox.service fail 2 ExecStart 'a(sasb)' 1 /bin/sleep 2 /bin/sleep infinity false User s nobody 0
touch "$RUNTIME_DIRECTORY/berth.sock"
cat /srv/units-hello/app.js
if touch /etc/units-sandbox-escape 2>/dev/null; then echo "could write /etc"; exit 1; fi
echo sandbox-ok`
		dropin := "[Service]\nType=oneshot\nExecStart=\nExecStart=/bin/sh -c '" + strings.ReplaceAll(strings.ReplaceAll(script, "'", `\x27`), "\n", "; ") + "'\nWatchdogSec=0\n"
		if err := m.WriteFile(ctx, "/etc/systemd/system/units-hello.service.d/sandbox-test.conf", []byte(dropin), 0o644); err != nil {
			t.Fatal(err)
		}
		m.MustRun(t, "systemctl", "daemon-reload")
		t.Cleanup(func() {
			m.Run(ctx, "systemctl", "stop", "units-from-sandbox.service", "units-hello.socket")
		})
		if _, err := m.Run(ctx, "systemctl", "start", "units-hello.service"); err != nil {
			t.Fatalf("%v\n%s", err, m.MustRun(t, "journalctl", "-u", "units-hello.service", "--no-pager"))
		}
		if _, err := m.WaitJournal(ctx, "sandbox-ok", "-u", "units-hello.service"); err != nil {
			t.Fatalf("the sandboxed script did not finish: %v", err)
		}
		got := m.MustRun(t, "systemctl", "show", "units-from-sandbox.service", "-p", "ActiveState,User")
		if !strings.Contains(got, "ActiveState=active\n") || !strings.Contains(got, "User=nobody\n") {
			t.Errorf("the unit started from the sandbox: %q, want active as nobody", got)
		}
	})
}

func TestParseExposure(t *testing.T) {
	out := "✗ UMask=   Files created by service are world-readable by default   0.1\n\n→ Overall exposure level for hello.service: 2.8 OK 🙂\n"
	if f, err := parseExposure(out); err != nil || f != 2.8 {
		t.Errorf("parseExposure = %v, %v, want 2.8", f, err)
	}
	if _, err := parseExposure("Unit hello.service not found."); err == nil {
		t.Error("parseExposure of an error message succeeded")
	}
}

// TestInitUserOnSystemd checks the --user units: systemd-analyze verify
// accepts them and a user's own manager starts the service with its
// sandboxing (a script in place of berth, via a drop-in).
func TestInitUserOnSystemd(t *testing.T) {
	m := machine.Machine(t)
	ctx := t.Context()
	const user = "unitsuser"
	home := "/home/" + user
	m.AddUser(t, user, "--create-home")
	m.MustRun(t, "loginctl", "enable-linger", user)

	in := Init{Name: "units-user", AppDir: home + "/app", Port: testenv.FreePort(t), Berth: home + "/bin/berth", UserManager: true}
	files, err := in.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := home + "/.config/systemd/user/"
	for _, f := range files {
		if err := m.WriteFile(ctx, dir+f.Name, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.WriteFile(ctx, in.Berth, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The line is found by its SyslogIdentifier, which systemd hands
	// journald with the output stream, not by _SYSTEMD_USER_UNIT, which
	// journald reads from the writer's cgroup and can miss for a
	// process that has already exited (seen on a loaded machine).
	dropin := "[Service]\nType=oneshot\nExecStart=\nExecStart=/bin/sh -c 'echo user-sandbox-ok \"$RUNTIME_DIRECTORY\"'\nSyslogIdentifier=units-user-test\nWatchdogSec=0\n"
	if err := m.WriteFile(ctx, dir+"units-user.service.d/test.conf", []byte(dropin), 0o644); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "chown", "-R", user+":", home)
	uid := strings.TrimSpace(m.MustRun(t, "id", "-u", user))

	out := m.MustRun(t, "runuser", "-u", user, "--", "env", "XDG_RUNTIME_DIR=/run/user/"+uid,
		"systemd-analyze", "--user", "verify", "--man=no", dir+"units-user.socket", dir+"units-user.service")
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze --user verify warns:\n%s", out)
	}

	// Wait for the user's manager that lingering started.
	m.MustRun(t, "systemctl", "start", "user@"+uid+".service")
	userctl := func(args ...string) (string, error) {
		return m.Run(ctx, "systemctl", append([]string{"--user", "-M", user + "@"}, args...)...)
	}
	if out, err := userctl("daemon-reload"); err != nil {
		t.Fatal(err, out)
	}
	t.Cleanup(func() { userctl("stop", "units-user.socket") })
	if out, err := userctl("start", "units-user.service"); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, m.MustRun(t, "journalctl", "_UID="+uid, "--no-pager"))
	}
	if _, err := m.WaitJournal(ctx, "user-sandbox-ok /run/user/"+uid+"/berth/units-user", "SYSLOG_IDENTIFIER=units-user-test", "_UID="+uid); err != nil {
		t.Error(err)
	}
}

// parseExposure reads the figure from systemd-analyze security's last
// line, "→ Overall exposure level for NAME.service: 2.7 OK 🙂".
func parseExposure(out string) (float64, error) {
	i := strings.LastIndex(out, "Overall exposure level for ")
	if i < 0 {
		return 0, errors.New("no overall exposure level")
	}
	_, rest, ok := strings.Cut(out[i:], ": ")
	if !ok {
		return 0, errors.New("no overall exposure level")
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return 0, errors.New("no overall exposure level")
	}
	return strconv.ParseFloat(f[0], 64)
}
