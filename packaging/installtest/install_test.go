package installtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/packaging/systemdtest"
	"berth/packaging/testenv"
	"berth/units"
)

// root is the repository root, relative to this package's directory.
const root = "../.."

const (
	app    = "hello"
	appDir = "/srv/hello"
)

// TestInstallRemovePurge walks through what a user does with the package,
// on a fresh systemd: apt install, berth init, systemctl enable --now, a
// request, the journal, the worker units, an app under a user's own systemd
// (berth init --user), a reinstall (what an upgrade does), apt remove, apt
// purge. Each step is a subtest, so a run shows which steps hold; the later
// steps still run when an earlier one fails, as far as they can.
func TestInstallRemovePurge(t *testing.T) {
	testenv.NeedRoot(t)
	deb := debPackage(t)
	version := strings.TrimSpace(readRoot(t, "packaging/VERSION"))

	m := systemdtest.Boot(t, systemdtest.Config{})
	before := berthPaths(t, m)
	port := testenv.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"

	installed := t.Run("apt install", func(t *testing.T) {
		start := time.Now()
		installDeb(t, m, deb)
		t.Logf("apt install took %s", time.Since(start).Round(time.Millisecond))

		if got := strings.TrimSpace(m.MustRun(t, "berth", "version")); got != "berth "+version {
			t.Errorf("berth version says %q, want %q", got, "berth "+version)
		}
		if got := status(t, m); got != "install ok installed" {
			t.Errorf("dpkg status of berth: %q", got)
		}
		if got := strings.TrimSpace(m.MustRun(t, "man", "-w", "berth")); got != "/usr/share/man/man1/berth.1.gz" {
			t.Errorf("man -w berth: %q", got)
		}
		// nodejs is a Recommends: whichever package provides it (Debian's,
		// or one already installed) must give a working node.
		nodeVersion := m.MustRun(t, "node", "--version")
		nodePkg, _ := m.Run(t.Context(), "dpkg-query", "-W", "-f", "${Package} ${Version}", "nodejs")
		t.Logf("node %s from package %s", strings.TrimSpace(nodeVersion), nodePkg)
	})
	if !installed {
		t.Fatal("berth is not installed; nothing else can be checked")
	}

	t.Run("berth init", func(t *testing.T) { initApp(t, m, port) })
	t.Run("systemctl enable --now", func(t *testing.T) { enableApp(t, m, url) })

	t.Run("journal", func(t *testing.T) {
		// berth's own lines: journal entries of hello.service written by
		// the berth binary.
		if err := waitJournal(t.Context(), m, func(e map[string]any) bool {
			return e["_EXE"] == "/usr/bin/berth"
		}, "-u", app+".service"); err != nil {
			t.Errorf("journalctl -u %s has no line from /usr/bin/berth: %v", app, err)
		}
		// The app's own output, whichever unit it went to.
		if err := waitJournal(t.Context(), m, func(e map[string]any) bool {
			msg, _ := e["MESSAGE"].(string)
			return strings.HasPrefix(msg, "hello listening on port 3000")
		}, "-u", app+".service", "-u", units.Slice(app), "-u", "berth-"+app+"-*"); err != nil {
			t.Errorf("the app's line %q is not in the journal of %s or its workers: %v",
				"hello listening on port 3000", app, err)
		}
	})

	t.Run("worker units", func(t *testing.T) {
		w1 := units.WorkerService(app, "w1")
		list := m.MustRun(t, "systemctl", "list-units", "--all", "--plain", "--no-legend", "berth-"+app+"-*")
		if !strings.Contains(list, w1) {
			t.Fatalf("no %s among the units:\n%s", w1, list)
		}
		if got := active(t, m, w1); got != "active" {
			t.Errorf("%s is %s, want active", w1, got)
		}
		if got := show(t, m, w1, "Slice"); got != units.Slice(app) {
			t.Errorf("%s runs in slice %q, want %s", w1, got, units.Slice(app))
		}
	})

	userPort := testenv.FreePort(t)
	userURL := "http://127.0.0.1:" + strconv.Itoa(userPort) + "/"
	t.Run("user manager app", func(t *testing.T) { startUserApp(t, m, userPort, userURL) })

	t.Run("apt reinstall restarts berth", func(t *testing.T) {
		// What an upgrade does: postinst configure with the old version
		// restarts running berth services on the new binary.
		before := show(t, m, app+".service", "MainPID")
		if before == "0" {
			t.Fatalf("%s is not running\n%s", app, diagnose(m))
		}
		installDeb(t, m, deb, "--reinstall")
		if after := show(t, m, app+".service", "MainPID"); after == before || after == "0" {
			t.Errorf("MainPID of %s was %s before the reinstall and is %s after: not restarted", app, before, after)
		}
		if body, err := get(t.Context(), url, 90*time.Second); err != nil || !strings.HasPrefix(body, "hello from pid ") {
			t.Errorf("after the reinstall: %q, %v\n%s", body, err, diagnose(m))
		}
	})

	t.Run("apt remove", func(t *testing.T) {
		start := time.Now()
		apt(t, m, "remove", "berth")
		t.Logf("apt remove took %s", time.Since(start).Round(time.Millisecond))

		assertStopped(t, m, port)
		assertUserAppStopped(t, m, userPort)
		if got := status(t, m); got != "deinstall ok config-files" {
			t.Errorf("dpkg status after remove: %q, want config-files", got)
		}
		mustExist(t, m, "/etc/berth/berth.json.example") // a conffile: kept until purge
		mustNotExist(t, m, "/usr/bin/berth", "/run/berth")
		mustExist(t, m, userFiles()...)
	})

	t.Run("apt purge", func(t *testing.T) {
		apt(t, m, "purge", "berth")
		if out, err := m.Run(t.Context(), "dpkg-query", "-W", "berth"); err == nil {
			t.Errorf("dpkg still knows berth after purge: %s", out)
		}
		mustExist(t, m, userFiles()...)
		assertNoBerthFiles(t, m, before)
	})
}

// initApp makes the app's user, copies examples/hello to appDir and runs
// berth init for port.
func initApp(t *testing.T, m *systemdtest.Machine, port int) {
	m.AddUser(t, app, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin")
	copyApp(t, m)
	m.MustRun(t, "berth", "init", appDir, "--name", app, "--port", strconv.Itoa(port))
	for _, u := range []string{app + ".socket", app + ".service"} {
		if _, err := m.Run(t.Context(), "test", "-f", "/etc/systemd/system/"+u); err != nil {
			t.Errorf("berth init wrote no /etc/systemd/system/%s", u)
		}
	}
}

// enableApp enables and starts the app's socket, and wants the first
// request to url to start berth and reach the app.
func enableApp(t *testing.T, m *systemdtest.Machine, url string) {
	m.MustRun(t, "systemctl", "daemon-reload")
	m.MustRun(t, "systemctl", "enable", "--now", app+".socket")
	body, err := get(t.Context(), url, 90*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, diagnose(m))
	}
	if !strings.HasPrefix(body, "hello from pid ") {
		t.Errorf("GET %s: body %q, want the hello app's answer", url, body)
	}
	// The request started berth. `systemctl start` now waits for the
	// start job already running, until berth sends READY=1.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := m.Run(ctx, "systemctl", "start", app+".service"); err != nil {
		t.Errorf("%s did not become ready: %v\n%s", app, err, diagnose(m))
	}
	if got := active(t, m, app+".service"); got != "active" {
		t.Errorf("%s is %s after the first request, want active", app, got)
	}
}

// assertStopped checks that nothing of berth runs any more: the app's units
// are down, no worker unit is active, no berth or app process is left, and
// the port is closed.
func assertStopped(t *testing.T, m *systemdtest.Machine, port int) {
	t.Helper()
	for _, u := range []string{app + ".socket", app + ".service"} {
		if got := active(t, m, u); got != "inactive" && got != "failed" {
			t.Errorf("after removal, %s is %s", u, got)
		}
	}
	if list := m.MustRun(t, "systemctl", "list-units", "--state=active", "--plain", "--no-legend",
		"berth-*.service", "berth-*.socket", "berth-*.slice", "berth.slice"); strings.TrimSpace(list) != "" {
		t.Errorf("after removal, berth units still active:\n%s", list)
	}
	if procs := berthProcesses(t, m); procs != "" {
		t.Errorf("after removal, berth's processes still run:\n%s", procs)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("after removal, port %d still accepts connections", port)
	}
}

// assertNoBerthFiles checks that no file or directory named *berth* has
// appeared since before (berthPaths), except in the app directory.
//
// One exception is logged, not failed: the transient unit file of a worker
// unit that is stopped but still loaded (/run/systemd/transient/…). systemd
// drops it when it collects the unit, and on this machine kind (cgroup v1
// inside nspawn) it sometimes never does: `systemd-analyze dump` says "May
// GC: no" after "Failed to kill control group … Input/output error". It
// lives in /run, goes at the next boot, and the unit runs nothing (checked
// by assertStopped).
func assertNoBerthFiles(t *testing.T, m *systemdtest.Machine, before []string) {
	t.Helper()
	var left []string
	for _, p := range berthPaths(t, m) {
		if slices.Contains(before, p) || strings.HasPrefix(p, appDir+"/") {
			continue
		}
		if unit, ok := strings.CutPrefix(p, "/run/systemd/transient/"); ok && !strings.Contains(unit, "/") {
			if st := active(t, m, unit); st == "inactive" || st == "failed" {
				t.Logf("systemd has not collected the %s unit %s (its file %s is left in /run)", st, unit, p)
				continue
			}
		}
		left = append(left, p)
	}
	if len(left) > 0 {
		t.Errorf("berth files left behind:\n%s", strings.Join(left, "\n"))
	}
}

// userApp is the app a user runs under their own systemd (berth init
// --user), with its home and uid.
const (
	userApp  = "hello2"
	userName = "appuser"
)

// startUserApp sets up userApp under userName's own service manager and
// wants it to answer on port.
func startUserApp(t *testing.T, m *systemdtest.Machine, port int, url string) {
	t.Helper()
	m.AddUser(t, userName, "--create-home", "--shell", "/bin/sh")
	home := "/home/" + userName
	uid := strings.TrimSpace(m.MustRun(t, "id", "-u", userName))
	// Lingering keeps the user's manager running without a login session,
	// as a user's long-running apps need.
	m.MustRun(t, "loginctl", "enable-linger", userName)
	m.MustRun(t, "systemctl", "start", "user@"+uid+".service")
	dir := home + "/" + userApp
	m.MustRun(t, "cp", "-r", appDir, dir)
	m.MustRun(t, "chown", "-R", userName+":"+userName, dir)
	m.MustRun(t, "runuser", "-u", userName, "--", "env", "HOME="+home,
		"berth", "init", dir, "--user", "--name", userApp, "--port", strconv.Itoa(port))
	user := []string{"--user", "--machine=" + userName + "@"}
	m.MustRun(t, "systemctl", append(user, "daemon-reload")...)
	m.MustRun(t, "systemctl", append(user, "enable", "--now", userApp+".socket")...)
	body, err := get(t.Context(), url, 90*time.Second)
	if err != nil {
		st, _ := m.Run(t.Context(), "systemctl", append(user, "status", "--no-pager", userApp+".socket", userApp+".service")...)
		j, _ := m.Run(t.Context(), "journalctl", "--no-pager", "-n", "50")
		st += "\n" + j
		t.Fatalf("%v\n%s", err, st)
	}
	if !strings.HasPrefix(body, "hello from pid ") {
		t.Errorf("GET %s: body %q, want the hello app's answer", url, body)
	}
}

// assertUserAppStopped checks that the user manager's berth app is down.
func assertUserAppStopped(t *testing.T, m *systemdtest.Machine, port int) {
	t.Helper()
	user := []string{"--user", "--machine=" + userName + "@"}
	for _, u := range []string{userApp + ".socket", userApp + ".service"} {
		out, _ := m.Run(t.Context(), "systemctl", append(user, "show", "--value", "--property=ActiveState", u)...)
		if got := strings.TrimSpace(out); got != "inactive" && got != "failed" {
			t.Errorf("after removal, %s of user %s is %q", u, userName, got)
		}
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("after removal, port %d of the user's app still accepts connections", port)
	}
}

// debPackage returns the .deb to install: $BERTH_DEB, or one `make deb`
// builds now.
func debPackage(t *testing.T) string {
	return buildPackage(t, "deb", "BERTH_DEB", "berth_*.deb", "dpkg-buildpackage", "dh")
}

// buildPackage returns the package to install: $envVar, or the one
// `make target` builds now (needing tools besides make, go and git).
func buildPackage(t *testing.T, target, envVar, glob string, tools ...string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	for _, c := range append([]string{"make", "go", "git"}, tools...) {
		testenv.NeedCommand(t, c)
	}
	dist := t.TempDir()
	start := time.Now()
	out, err := exec.Command("make", "-C", root, target, "DIST="+dist).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", target, err, out)
	}
	t.Logf("make %s took %s", target, time.Since(start).Round(time.Millisecond))
	pkgs, _ := filepath.Glob(filepath.Join(dist, glob))
	if len(pkgs) != 1 {
		t.Fatalf("make %s made %q", target, pkgs)
	}
	return pkgs[0]
}

func readRoot(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// installDeb installs the host's .deb in the container with apt-get install
// and the extra apt-get options, and leaves no copy of it there.
func installDeb(t *testing.T, m *systemdtest.Machine, deb string, opts ...string) {
	t.Helper()
	dir := "/tmp/berth-install"
	pkg := dir + "/" + filepath.Base(deb)
	if err := m.CopyFile(t.Context(), deb, pkg); err != nil {
		t.Fatal(err)
	}
	apt(t, m, append(append([]string{"install"}, opts...), pkg)...)
	m.MustRun(t, "rm", "-rf", dir)
}

// apt runs apt-get -y ARGS in the container.
func apt(t *testing.T, m *systemdtest.Machine, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := m.Command(ctx, "apt-get", append([]string{"-y", "-q"}, args...)...)
	cmd.Env = append(cmd.Env, "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// status is berth's dpkg status ("install ok installed"), empty when dpkg
// does not know it.
func status(t *testing.T, m *systemdtest.Machine) string {
	t.Helper()
	out, _ := m.Run(t.Context(), "dpkg-query", "-W", "-f", "${Status}", "berth")
	return strings.TrimSpace(out)
}

// active is the ActiveState of a unit.
func active(t *testing.T, m *systemdtest.Machine, unit string) string {
	t.Helper()
	return show(t, m, unit, "ActiveState")
}

func show(t *testing.T, m *systemdtest.Machine, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(m.MustRun(t, "systemctl", "show", "--value", "--property="+prop, unit))
}

// copyApp copies examples/hello to appDir, owned by the app's user.
func copyApp(t *testing.T, m *systemdtest.Machine) {
	t.Helper()
	src := filepath.Join(root, "examples", app)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := m.CopyFile(t.Context(), filepath.Join(src, e.Name()), appDir+"/"+e.Name()); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.MustRun(t, "chown", "-R", app+":"+app, appDir)
}

// userFiles are what apt remove and apt purge must leave alone.
func userFiles() []string {
	return []string{appDir + "/app.js", "/etc/systemd/system/" + app + ".socket", "/etc/systemd/system/" + app + ".service"}
}

func mustExist(t *testing.T, m *systemdtest.Machine, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := m.Run(t.Context(), "test", "-e", p); err != nil {
			t.Errorf("%s is gone", p)
		}
	}
}

func mustNotExist(t *testing.T, m *systemdtest.Machine, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := m.Run(t.Context(), "test", "!", "-e", p); err != nil {
			t.Errorf("%s is still there", p)
		}
	}
}

// berthPaths lists the files and directories in the container whose name
// contains "berth", where packages, systemd and berth write.
func berthPaths(t *testing.T, m *systemdtest.Machine) []string {
	t.Helper()
	out, err := m.Run(t.Context(), "find", "/etc", "/usr", "/var", "/opt", "/srv", "/run", "/tmp", "/home",
		"-xdev", "-iname", "*berth*")
	if err != nil && out == "" {
		t.Fatal(err)
	}
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "/") {
			paths = append(paths, line)
		}
	}
	return paths
}

// berthProcesses lists the container's processes that run berth (its binary,
// even deleted) or run as the app's user.
func berthProcesses(t *testing.T, m *systemdtest.Machine) string {
	t.Helper()
	out, _ := m.Run(t.Context(), "sh", "-c", `for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		user=$(stat -c %U "$p")
		case "$exe $user" in
		*berth*|*" `+app+`") echo "${p#/proc/} $user $exe";;
		esac
	done`)
	return strings.TrimSpace(out)
}

// get fetches url until it answers 200 or within lasts. A request blocks
// while systemd starts berth and berth starts a worker; a 503 (no worker
// ready within berth's queue timeout) is retried.
func get(ctx context.Context, url string, within time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if !isRetryable(err) {
				return "", fmt.Errorf("GET %s: %w", url, err)
			}
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return string(body), nil
		}
		last = fmt.Errorf("status %s: %s", resp.Status, body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
	}
	return "", fmt.Errorf("GET %s: no 200 within %s: %w", url, within, last)
}

// isRetryable: a connection reset while systemd hands the socket over.
func isRetryable(err error) bool {
	return errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset")
}

// waitJournal follows the journal (journalctl -f -o json ARGS) until an
// entry satisfies match, or 60 s pass.
func waitJournal(ctx context.Context, m *systemdtest.Machine, match func(map[string]any) bool, args ...string) error {
	const within = 60 * time.Second
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	// timeout(1) ends journalctl inside the container too: killing nsenter
	// would not.
	argv := append([]string{strconv.Itoa(int(within/time.Second) + 5),
		"journalctl", "--no-pager", "-f", "-n", "all", "-o", "json"}, args...)
	cmd := m.Command(ctx, "timeout", argv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Wait()
	// Unblock the scanner when time is up or a match was found.
	defer context.AfterFunc(ctx, func() { out.Close() })()
	defer cancel()
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil && match(e) {
			return nil
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("none of %d entries matched within %s", n, within)
	}
	return fmt.Errorf("journalctl ended after %d entries: %v", n, sc.Err())
}

// diagnose returns the state of the app's units, for a failure message.
func diagnose(m *systemdtest.Machine) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _ := m.Run(ctx, "systemctl", "status", "--no-pager", "--lines=0", app+".socket", app+".service")
	j, _ := m.Run(ctx, "journalctl", "--no-pager", "-n", "60", "-u", app+".service", "-u", "berth-"+app+"-*")
	return st + "\n" + j
}
