package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth/packaging/testenv"
)

// appOutsideTmp makes an app directory that the service's PrivateTmp=
// does not hide (t.TempDir is in /tmp), removed at the end.
func appOutsideTmp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/lib", "berth-init-test-")
	if err != nil {
		dir, err = os.MkdirTemp(".", "init-app-")
		if err != nil {
			t.Fatal(err)
		}
		dir, _ = filepath.Abs(dir)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestInitChecksServeArgs: serve flags after -- are parsed with serve's
// own parser before anything is written.
func TestInitChecksServeArgs(t *testing.T) {
	env, dir := testInitEnv(t)
	app := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--wrkers", "3"}, "serve arguments after --: unknown flag --wrkers (did you mean --workers?)"},
		{[]string{"--spawner", "docker"}, `serve arguments after --: --spawner "docker": want exec, systemd or auto`},
		{[]string{"--workers", "x"}, `invalid value "x" for flag --workers`},
		{[]string{"/srv/other"}, "take no app directory"},
		{[]string{"--min-workers", "4", "--max-workers", "2"}, "--min-workers 4 is more than --max-workers 2"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{app, "--name", "shop", "--port", "80", "--"}, tt.args...)
			code, out, errOut := initRun(env, args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q (stdout %q)", code, errOut, tt.want, out)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%d files written despite the error", len(ents))
			}
		})
	}
	// Good serve flags pass, and land in ExecStart.
	code, out, errOut := initRun(env, app, "--name", "shop", "--port", "80", "--stdout", "--", "--workers", "3", "--spawn-timeout=5s")
	if code != 0 || !strings.Contains(out, "--name shop --workers 3 --spawn-timeout=5s\n") {
		t.Errorf("exit %d: %s\n%s", code, errOut, out)
	}
}

// TestInitListen: --listen sets the socket's ListenStream=, several
// allowed; bad addresses are refused.
func TestInitListen(t *testing.T) {
	env, _ := testInitEnv(t)
	app := t.TempDir()
	code, out, errOut := initRun(env, app, "--name", "shop", "--stdout", "--listen", "127.0.0.1:8080", "--listen", "[::1]:8080", "--listen", "unix:/run/shop.sock")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "[Socket]\nListenStream=127.0.0.1:8080\nListenStream=[::1]:8080\nListenStream=/run/shop.sock\n"
	if !strings.Contains(out, want) {
		t.Errorf("socket unit lacks\n%s\nin:\n%s", want, out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "localhost"}, "port \"localhost\" out of range"},
		{[]string{"--listen", "127.0.0.1:99999"}, "out of range"},
		{[]string{"--listen", "unix:run/x.sock"}, "absolute path"},
		{[]string{"--listen", ":8080"}, "name a host"},
		{[]string{"--listen", "127.0.0.1:80", "--port", "80"}, "not both"},
	} {
		code, _, errOut := initRun(env, append([]string{app, "--name", "shop", "--stdout"}, tt.args...)...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
}

// TestInitSandboxWarnings: init warns when the service's sandbox hides
// the app or the binary, and is quiet when it does not.
func TestInitSandboxWarnings(t *testing.T) {
	env, _ := testInitEnv(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env.executable = func() (string, error) { return self, nil }
	tmpApp := filepath.Join(os.TempDir(), "berth-init-warn-app")
	os.Mkdir(tmpApp, 0o755)
	t.Cleanup(func() { os.Remove(tmpApp) })
	good := appOutsideTmp(t)

	code, _, errOut := initRun(env, tmpApp, "--name", "shop", "--port", "80", "--stdout")
	if code != 0 || !strings.Contains(errOut, "warning: the app directory "+tmpApp+" is in /tmp, which the service cannot see (PrivateTmp=yes") {
		t.Errorf("app in /tmp: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = initRun(env, tmpApp, "--name", "shop", "--port", "80", "--stdout", "--user")
	if code != 0 || strings.Contains(errOut, "PrivateTmp") {
		t.Errorf("--user units have no PrivateTmp=, yet: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = initRun(env, good, "--name", "shop", "--port", "80", "--stdout", "--berth", "/home/dev/go/bin/berth")
	if code != 0 || !strings.Contains(errOut, "warning: the berth binary /home/dev/go/bin/berth is in a home directory, which the service cannot see (ProtectHome=yes)") {
		t.Errorf("binary in /home: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(errOut, "the service cannot start until it exists") {
		t.Errorf("a missing binary is not warned about: %q", errOut)
	}
	code, _, errOut = initRun(env, good, "--name", "shop", "--port", "80", "--stdout", "--berth", self)
	if code != 0 || strings.Contains(errOut, "warning") && !strings.HasPrefix(self, "/tmp/") {
		t.Errorf("nothing hidden, yet: exit %d, stderr %q", code, errOut)
	}
}

// TestInitOutputVerifies: systemd-analyze verify accepts what berth init
// writes, for the system and user managers, with --port and --listen.
// verify checks that ExecStart='s binary exists, so the units name the
// berth binary this test built.
func TestInitOutputVerifies(t *testing.T) {
	analyze := testenv.NeedCommand(t, "systemd-analyze")
	app := appOutsideTmp(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"system port", []string{"--port", "8080"}},
		{"system listen", []string{"--listen", "127.0.0.1:8080", "--listen", "unix:/run/verify.sock", "--", "--workers", "2"}},
		{"user", []string{"--user", "--port", "8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			xdg := t.TempDir()
			env := initEnv{
				systemDir:  dir,
				getenv:     func(k string) string { return map[string]string{"XDG_CONFIG_HOME": xdg}[k] },
				executable: func() (string, error) { return berthBin, nil },
			}
			args := append([]string{app, "--name", "verify"}, tc.args...)
			if code, _, errOut := initRun(env, args...); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			unitDir := dir
			verify := []string{"verify", "--man=no"}
			if tc.name == "user" {
				unitDir = filepath.Join(xdg, "systemd", "user")
				verify = append([]string{"--user"}, verify...)
				if os.Getenv("XDG_RUNTIME_DIR") == "" {
					t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // systemd-analyze --user wants one
				}
			}
			cmd := exec.Command(analyze, append(verify, filepath.Join(unitDir, "verify.socket"), filepath.Join(unitDir, "verify.service"))...)
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
			}
		})
	}
}
