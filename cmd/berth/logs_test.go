package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/packaging/systemdtest"
	"berth/packaging/testenv"
	"berth/units"
)

func TestLogsArgs(t *testing.T) {
	tests := []struct {
		app    string
		follow bool
		lines  int
		user   bool
		want   []string
	}{
		{"hello", false, -1, false, []string{"--unit=hello.service", "--unit=berth-hello-*", "--output=short-iso"}},
		{"hello", true, 50, false, []string{"_SYSTEMD_UNIT=hello.service", "+", "_SYSTEMD_SLICE=berth-hello.slice", "+", "_PID=1", "UNIT=hello.service", "--output=short-iso", "--lines=50", "--follow"}},
		{"my-app", true, -1, true, []string{"_SYSTEMD_USER_UNIT=my-app.service", "+", `_SYSTEMD_USER_SLICE=berth-my\x2dapp.slice`, "--output=short-iso", "--follow"}},
		{"my-app", false, 0, true, []string{"--user-unit=my-app.service", `--user-unit=berth-my\x2dapp-*`, "--output=short-iso", "--lines=0"}},
	}
	for _, tt := range tests {
		if got := logsArgs(tt.app, tt.follow, tt.lines, tt.user); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("logsArgs(%q, %v, %d, %v) = %q, want %q", tt.app, tt.follow, tt.lines, tt.user, got, tt.want)
		}
	}
}

func TestLogsUsage(t *testing.T) {
	var ran []string
	env := logsEnv{command: func(args []string) (*exec.Cmd, error) {
		ran = args
		return exec.Command("true"), nil
	}}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "want one app name"},
		{[]string{"a", "b"}, 2, "want one app name"},
		{[]string{"my app"}, 2, "invalid app name"},
		{[]string{"-n", "x", "hello"}, 2, "invalid value"},
		{[]string{"hello", "-f", "-n", "5"}, 0, ""},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		ran = nil
		code := env.run(tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("berth logs %q: exit %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), tt.code, tt.want)
		}
		if tt.code == 0 && !reflect.DeepEqual(ran, logsArgs("hello", true, 5, false)) {
			t.Errorf("berth logs %q ran journalctl %q", tt.args, ran)
		}
	}
}

func TestLogsNoJournalctl(t *testing.T) {
	env := logsEnv{command: func([]string) (*exec.Cmd, error) {
		return nil, &exec.Error{Name: "journalctl", Err: exec.ErrNotFound}
	}}
	var out, errOut bytes.Buffer
	if code := env.run([]string{"hello"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "journalctl not found") {
		t.Errorf("exit %d, stderr %q; want 1 and \"journalctl not found\"", code, errOut.String())
	}
}

func TestLogsExitCode(t *testing.T) {
	env := logsEnv{command: func([]string) (*exec.Cmd, error) { return exec.Command("sh", "-c", "exit 3"), nil }}
	if code := env.run([]string{"hello"}, io.Discard, io.Discard); code != 3 {
		t.Errorf("exit %d, want journalctl's 3", code)
	}
}

// TestInitLogsOnSystemd runs `berth init` and `berth logs` against a real
// systemd in a container (their own container: the systemd tests of this
// package keep theirs busy with a running app).
func TestInitLogsOnSystemd(t *testing.T) {
	m := systemdtest.Boot(t, systemdtest.Config{})
	t.Run("init", func(t *testing.T) { testInitOnSystemd(t, m) })
	t.Run("logs", func(t *testing.T) { testLogsOnSystemd(t, m) })
	t.Run("user service serves", func(t *testing.T) { testInitUserServes(t, m) })
}

// testInitOnSystemd writes units with `berth init` straight into the
// container's /etc/systemd/system and has systemd judge them.
func testInitOnSystemd(t *testing.T, m *systemdtest.Machine) {
	ctx := t.Context()
	// The app directory must exist for init on this side and for systemd
	// on the other: the same path on both.
	app := filepath.Join(t.TempDir(), "initapp")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "mkdir", "-p", app)
	if err := m.WriteFile(ctx, units.DefaultBerth, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := initEnv{
		systemDir:  fmt.Sprintf("/proc/%d/root/etc/systemd/system", m.PID()),
		getenv:     func(string) string { return "" },
		executable: func() (string, error) { return units.DefaultBerth, nil },
	}
	port := testenv.FreePort(t)
	code, out, errOut := initRun(env, app, "--name", "initapp", "--port", strconv.Itoa(port))
	if code != 0 {
		t.Fatalf("berth init: exit %d: %s", code, errOut)
	}
	t.Logf("berth init said:\n%s", out)

	// --man=no: the berth(1) page comes with the package.
	if out := m.MustRun(t, "systemd-analyze", "verify", "--man=no", "/etc/systemd/system/initapp.socket", "/etc/systemd/system/initapp.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify warns:\n%s", out)
	}
	m.MustRun(t, "systemctl", "daemon-reload")
	sec := m.MustRun(t, "systemd-analyze", "security", "--no-pager", "initapp.service")
	i := strings.LastIndex(sec, "Overall exposure level for initapp.service: ")
	if i < 0 {
		t.Fatalf("no exposure level in:\n%s", sec)
	}
	f := strings.Fields(sec[i+len("Overall exposure level for initapp.service: "):])
	exposure, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatalf("exposure %q: %v", f[0], err)
	}
	t.Logf("README: `systemd-analyze security` rates the service that `berth init` writes %.1f %s (systemd 252; 0 is best, 10 worst).", exposure, f[1])
	if exposure > 4.0 {
		t.Errorf("exposure %.1f > 4.0:\n%s", exposure, sec)
	}

	// The next command berth init gave works: the socket listens.
	m.MustRun(t, "systemctl", "enable", "--now", "initapp.socket")
	t.Cleanup(func() { m.Run(context.Background(), "systemctl", "disable", "--now", "initapp.socket") })
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatalf("initapp.socket does not listen on %d: %v", port, err)
	}
	c.Close()
}

// testLogsOnSystemd logs from a unit named like berth's service and one
// named like its worker, and checks `berth logs` shows both in order.
func testLogsOnSystemd(t *testing.T, m *systemdtest.Machine) {
	ctx := t.Context()
	const app = "logs-app" // a '-' to check the worker glob's escaping
	env := logsEnv{command: func(args []string) (*exec.Cmd, error) {
		return m.Command(ctx, "journalctl", args...), nil
	}}
	say := func(unit, line string) {
		t.Helper()
		m.MustRun(t, "systemd-run", "--wait", "--quiet", "--unit="+strings.TrimSuffix(unit, ".service"), "/bin/sh", "-c", "printf '%s\\n' \"$0\"", line)
		if _, err := m.WaitJournal(ctx, line, "--unit="+unit); err != nil {
			t.Fatal(err)
		}
	}
	say(units.Service(app), "berth: first")
	say(units.WorkerService(app, "w1"), "worker: app line")
	say(units.Service(app)+"", "berth: second") // a second run of the same unit
	say(units.WorkerService("logs", "w1"), "another app's worker")

	var out, errOut bytes.Buffer
	if code := env.run([]string{app}, &out, &errOut); code != 0 {
		t.Fatalf("berth logs: exit %d: %s", code, errOut.String())
	}
	text := out.String()
	first, mid, last := strings.Index(text, "berth: first"), strings.Index(text, "worker: app line"), strings.Index(text, "berth: second")
	if first < 0 || mid < 0 || last < 0 || !(first < mid && mid < last) {
		t.Errorf("berth logs %s does not show berth's and the worker's lines in time order:\n%s", app, text)
	}
	if strings.Contains(text, "another app's worker") {
		t.Errorf("berth logs %s shows another app's worker:\n%s", app, text)
	}

	// -n 1 shows only the last line.
	out.Reset()
	if code := env.run([]string{app, "-n", "1"}, &out, &errOut); code != 0 || strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Errorf("berth logs -n 1: exit %d, output:\n%s", code, out.String())
	}

	// -f follows: a line logged after it started shows up.
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fenv := logsEnv{command: func(args []string) (*exec.Cmd, error) {
		return m.Command(fctx, "journalctl", args...), nil
	}}
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fenv.run([]string{app, "-f", "-n", "0"}, pw, io.Discard)
		pw.Close()
	}()
	found := make(chan error, 1)
	go func() {
		var seen strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			seen.Write(buf[:n])
			if strings.Contains(seen.String(), "worker: while following") {
				found <- nil
				return
			}
			if err != nil {
				found <- fmt.Errorf("%w; read %q", err, seen.String())
				return
			}
		}
	}()
	// Log until the follower sees it: journalctl may start after the
	// first line, and with -n 0 it shows only newer ones.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var ferr error
loop:
	for {
		m.MustRun(t, "systemd-run", "--wait", "--quiet", "--unit="+strings.TrimSuffix(units.WorkerService(app, "w2"), ".service"),
			"--slice="+units.Slice(app), "/bin/echo", "worker: while following")
		select {
		case ferr = <-found:
			break loop
		case <-fctx.Done():
			ferr = fctx.Err()
			break loop
		case <-tick.C:
		}
	}
	cancel()
	pr.Close()
	wg.Wait()
	if ferr != nil && !errors.Is(ferr, io.ErrClosedPipe) {
		t.Errorf("berth logs -f did not show a new worker line: %v", ferr)
	} else if ferr != nil {
		t.Errorf("berth logs -f ended before showing the new line")
	}
}
