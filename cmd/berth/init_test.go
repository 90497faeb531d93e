package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/packaging/systemdtest"
	"berth/packaging/testenv"
	"berth/units"
)

// testInitEnv writes system units to a temporary directory and names
// /usr/bin/berth as the binary.
func testInitEnv(t *testing.T) (initEnv, string) {
	t.Helper()
	dir := t.TempDir()
	home := t.TempDir()
	return initEnv{
		systemDir:  dir,
		getenv:     func(k string) string { return map[string]string{"HOME": home}[k] },
		executable: func() (string, error) { return "/usr/bin/berth", nil },
	}, dir
}

// initRun runs `berth init ARGS` in env and returns its exit code and output.
func initRun(env initEnv, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := env.run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestInitStdoutGolden checks `berth init --stdout` against
// testdata/init/hello.stdout, in which @APPDIR@ stands for the app
// directory (the units themselves have golden files in units/testdata).
func TestInitStdoutGolden(t *testing.T) {
	env, dir := testInitEnv(t)
	app := t.TempDir()
	code, out, errOut := initRun(env, app, "--name", "hello", "--port", "8080", "--stdout")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := strings.ReplaceAll(out, app, "@APPDIR@")
	const golden = "testdata/init/hello.stdout"
	if os.Getenv("BERTH_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (BERTH_UPDATE_GOLDEN=1 go test -run TestInitStdoutGolden ./cmd/berth rewrites it)", err)
	}
	if got != string(want) {
		t.Errorf("berth init --stdout differs from %s (BERTH_UPDATE_GOLDEN=1 rewrites it):\n%s", golden, got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("--stdout wrote %d files", len(ents))
	}
}

func TestInitWrites(t *testing.T) {
	env, dir := testInitEnv(t)
	app := t.TempDir()
	code, out, errOut := initRun(env, app, "--port", "8080", "--name", "hello", "--", "--workers", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want, err := units.Init{Name: "hello", AppDir: app, Port: 8080, ServeArgs: []string{"--workers", "3"}}.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range want {
		p := filepath.Join(dir, f.Name)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s is not what units renders:\n%s", p, got)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", p, fi.Mode().Perm())
		}
		if !strings.Contains(out, "wrote "+p+"\n") {
			t.Errorf("output does not name %s:\n%s", p, out)
		}
	}
	if !strings.Contains(out, "systemctl enable --now hello.socket") {
		t.Errorf("output does not give the next command:\n%s", out)
	}

	// A second run refuses and leaves the files alone.
	os.WriteFile(filepath.Join(dir, "hello.service"), []byte("mine\n"), 0o644)
	code, out, errOut = initRun(env, app, "--port", "9090", "--name", "hello")
	if code != 1 || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "--force") || out != "" {
		t.Errorf("second init: exit %d, stdout %q, stderr %q; want 1 and a refusal naming --force", code, out, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "hello.service")); string(b) != "mine\n" {
		t.Errorf("refused init changed hello.service to:\n%s", b)
	}

	// --force overwrites and says to restart.
	code, out, errOut = initRun(env, app, "--port", "9090", "--name", "hello", "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d: %s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "hello.socket")); !strings.Contains(string(b), "ListenStream=9090\n") {
		t.Errorf("--force did not rewrite hello.socket:\n%s", b)
	}
	if !strings.Contains(out, "restart hello.service") {
		t.Errorf("--force output does not say to restart:\n%s", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%s holds %d entries, want the two units (no temporary files)", dir, len(ents))
	}
}

func TestInitUser(t *testing.T) {
	env, sysDir := testInitEnv(t)
	home := env.getenv("HOME")
	app := t.TempDir()
	code, out, errOut := initRun(env, app, "--port", "8080", "--name", "hello", "--user")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	p := filepath.Join(home, ".config/systemd/user/hello.service")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "WantedBy=default.target") {
		t.Errorf("%s is not the --user service:\n%s", p, b)
	}
	if !strings.Contains(out, "systemctl --user enable --now hello.socket") {
		t.Errorf("output lacks the --user next command:\n%s", out)
	}
	if ents, _ := os.ReadDir(sysDir); len(ents) != 0 {
		t.Errorf("--user wrote to the system directory")
	}

	xdg := t.TempDir()
	env.getenv = func(k string) string { return map[string]string{"HOME": home, "XDG_CONFIG_HOME": xdg}[k] }
	if code, _, errOut := initRun(env, app, "--port", "8080", "--name", "hello", "--user"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(xdg, "systemd/user/hello.socket")); err != nil {
		t.Errorf("XDG_CONFIG_HOME not used: %v", err)
	}
}

func TestInitErrors(t *testing.T) {
	env, _ := testInitEnv(t)
	app := t.TempDir()
	notDir := filepath.Join(app, "file")
	os.WriteFile(notDir, nil, 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no port", []string{app, "--name", "x"}, 2, "--port or --listen is required"},
		{"no app dir", []string{"--port", "80"}, 2, "want one app directory"},
		{"two app dirs", []string{app, app, "--port", "80"}, 2, "want one app directory"},
		{"missing app dir", []string{filepath.Join(app, "nope"), "--port", "80", "--name", "x"}, 1, "no such file"},
		{"app dir is a file", []string{notDir, "--port", "80", "--name", "x"}, 1, "not a directory"},
		{"bad name", []string{app, "--port", "80", "--name", "my app"}, 2, "invalid app name"},
		{"bad port", []string{app, "--port", "99999", "--name", "x"}, 2, "out of range"},
		{"unknown flag", []string{app, "--port", "80", "--bogus"}, 2, "unknown flag --bogus; 'berth init -h' lists the flags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := initRun(env, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q (stdout %q)", code, errOut, tt.code, tt.want, out)
			}
		})
	}
}

func TestInitDefaultName(t *testing.T) {
	env, dir := testInitEnv(t)
	app := filepath.Join(t.TempDir(), "shop-api")
	os.Mkdir(app, 0o755)
	if code, _, errOut := initRun(env, app, "--port", "80"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "shop-api.service")); err != nil {
		t.Errorf("the app directory's name was not used: %v", err)
	}
}

// userApp is the Node app of the --user test: it answers with its user.
const userApp = `require('http').createServer((req, res) => {
  res.end('hello from ' + require('os').userInfo().username + '\n');
}).listen(3000, () => console.log('user app listening'));
`

// testInitUserServes installs the --user units of an app in a user's home
// and has that user's own systemd serve it with the real berth: no root
// anywhere. Then `berth logs --user`, run as that user, shows the app's line.
func testInitUserServes(t *testing.T, m *systemdtest.Machine) {
	testenv.NeedCommand(t, "node")
	ctx := t.Context()
	const user = "berthuser"
	home := "/home/" + user
	if err := m.CopyFile(ctx, berthBin, "/usr/local/bin/berth"); err != nil {
		t.Fatal(err)
	}
	m.AddUser(t, user, "--create-home")
	if err := m.WriteFile(ctx, home+"/app/app.js", []byte(userApp), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	files, err := units.Init{
		Name: "userapp", AppDir: home + "/app", Port: port, Berth: "/usr/local/bin/berth",
		UserManager: true, ServeArgs: []string{"--workers", "1"},
	}.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := m.WriteFile(ctx, home+"/.config/systemd/user/"+f.Name, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.MustRun(t, "chown", "-R", user+":", home)
	m.MustRun(t, "loginctl", "enable-linger", user)
	uid := strings.TrimSpace(m.MustRun(t, "id", "-u", user))
	m.MustRun(t, "systemctl", "start", "user@"+uid+".service")
	userctl := []string{"--user", "-M", user + "@"}
	m.MustRun(t, "systemctl", append(userctl, "daemon-reload")...)
	m.MustRun(t, "systemctl", append(userctl, "enable", "--now", "userapp.socket")...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := m.Run(context.Background(), "journalctl", "--no-pager", "-n", "60", "_UID="+uid)
			t.Logf("journal of %s:\n%s", user, out)
		}
		m.Run(context.Background(), "systemctl", append(userctl, "stop", "userapp.socket", "userapp.service")...)
	})

	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("GET the --user app: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello from "+user+"\n" {
		t.Fatalf("the --user app answered %d %q", resp.StatusCode, body)
	}
	mainPID := strings.TrimSpace(m.MustRun(t, "systemctl", append(userctl, "show", "-P", "MainPID", "userapp.service")...))
	if owner := strings.TrimSpace(m.MustRun(t, "ps", "-o", "user=", "-p", mainPID)); owner != user {
		t.Errorf("berth runs as %q, want %s", owner, user)
	}

	// berth logs --user, as the user: journalctl --user-unit matches the
	// caller's own uid. (setpriv, not runuser: a PAM session each time
	// would hold up the container's poweroff.)
	env := logsEnv{command: func(args []string) (*exec.Cmd, error) {
		return m.Command(ctx, "setpriv", append([]string{"--reuid=" + user, "--regid=" + user, "--init-groups", "journalctl"}, args...)...), nil
	}}
	waitUntil(t, 30*time.Second, "berth logs --user shows the app's line", func() bool {
		var out bytes.Buffer
		env.run([]string{"--user", "userapp"}, &out, io.Discard)
		return strings.Contains(out.String(), "user app listening")
	})
}
