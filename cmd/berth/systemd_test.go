package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/balancer/loop/uring"
	"berth/packaging/systemdtest"
	"berth/packaging/testenv"
	"berth/units"
)

// The tests in this file run berth as a real systemd service inside a
// throwaway container (package systemdtest): the socket and service units
// that `berth init` writes there, socket activation, workers as transient units
// over D-Bus, sd_notify, the journal. They share one container and run in
// order, each leaving the app serving for the next.

// sdApp is the app the container serves: it logs a marker line when it
// listens, and answers with its pid.
const sdApp = `const http = require('http');
const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end('pid ' + process.pid + '\n');
});
server.listen(3000, () => {
  console.log('sdtest app listening, pid ' + process.pid + ', user ' + require('os').userInfo().username);
});
`

// sdBox is the container with berth installed as the service "hello".
type sdBox struct {
	t    *testing.T
	m    *systemdtest.Machine
	port int
	url  string
}

const (
	sdName   = "hello"
	sdAppDir = "/srv/hello"
	sdUser   = "helloapp"
)

func TestSystemd(t *testing.T) {
	testenv.NeedCommand(t, "node")
	box := bootBox(t)

	t.Run("socket activation starts berth", box.testSocketActivation)
	t.Run("workers are transient units", box.testWorkerUnits)
	t.Run("status line", box.testStatus)
	t.Run("killed worker is replaced", box.testKillWorker)
	t.Run("workers followed across daemon-reexec", box.testReexec)
	t.Run("reload under load", func(t *testing.T) { box.testUnderLoad(t, "reload") })
	t.Run("restart under load", func(t *testing.T) { box.testUnderLoad(t, "restart") })
	t.Run("app log in the journal", box.testJournal)
	t.Run("uploads are held under the sandbox", box.testHeldUpload)
	t.Run("the event loops batch their sends under the sandbox", box.testLoopsBatch)
	t.Run("without io_uring the event loops send plainly and say why", box.testLoopsWithoutRing)
	t.Run("SIGKILLed berth leaves no worker", box.testKillBerth)
	t.Run("stop leaves no worker", box.testStop)
	t.Run("leftover units are cleared", box.testLeftovers)
	t.Run("scaling makes and retires worker units", box.testScaling)
	t.Run("root-owned app needs --user", box.testRootOwned)
	t.Run("failing app's output reaches status and answers", box.testFailingApp)
	t.Run("generic app reports by sd_notify or is probed", box.testGenericApp)
	t.Run("min-workers 0 and exit-idle-time", box.testIdle)
	t.Run("restart of a broken release fails and the one old worker serves throughout", box.testBrokenReload)
}

// bootBox boots the container and installs berth, the app and its units.
func bootBox(t *testing.T) *sdBox {
	m := systemdtest.Boot(t, systemdtest.Config{})
	ctx := t.Context()
	b := &sdBox{t: t, m: m, port: testenv.FreePort(t)}
	b.url = fmt.Sprintf("http://127.0.0.1:%d/", b.port)
	if err := m.CopyFile(ctx, berthBin, "/usr/local/bin/berth"); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile(ctx, sdAppDir+"/app.js", []byte(sdApp), 0o644); err != nil {
		t.Fatal(err)
	}
	m.AddUser(t, sdUser, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin")
	m.MustRun(t, "chown", "-R", sdUser+":", sdAppDir)
	b.installApp(t, sdName, b.port, "--workers 2 --memory-max 256M --cpu-quota 50% --tasks-max 64 --stop-timeout 5s")
	// A short watchdog, so that the test sees berth's WATCHDOG=1 pings.
	if err := m.WriteFile(ctx, "/etc/systemd/system/"+sdName+".service.d/watchdog.conf", []byte("[Service]\nWatchdogSec=2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "systemctl", "daemon-reload")
	m.MustRun(t, "systemctl", "enable", "--now", sdName+".socket")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := m.Run(context.Background(), "journalctl", "--no-pager", "-n", "150", "-u", sdName+".service", "-u", "berth-*")
			t.Logf("journal of %s and its workers:\n%s", sdName, out)
			out, _ = m.Run(context.Background(), "systemctl", "status", "--no-pager", "--all", "berth-*")
			t.Logf("worker units:\n%s", out)
			out, _ = m.Run(context.Background(), "systemctl", "list-jobs", "--no-pager")
			t.Logf("jobs:\n%s", out)
		}
	})
	return b
}

// installApp runs `berth init` in the container for app, serving sdAppDir
// on port, with serve flags after "--" as an administrator would give them,
// and reloads systemd.
func (b *sdBox) installApp(t *testing.T, app string, port int, flags string) {
	t.Helper()
	b.installAppDir(t, app, sdAppDir, port, strings.Fields(flags)...)
}

// installAppDir is installApp for the app in dir, with serve arguments.
func (b *sdBox) installAppDir(t *testing.T, app, dir string, port int, args ...string) {
	t.Helper()
	cmd := append([]string{"init", dir, "--name", app, "--port", strconv.Itoa(port), "--"}, args...)
	b.m.MustRun(t, "berth", append(cmd, "--log-level", "debug")...)
	b.m.MustRun(t, "systemctl", "daemon-reload")
}

// show returns one property of a unit (systemctl show -P).
func (b *sdBox) show(t *testing.T, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(b.m.MustRun(t, "systemctl", "show", "-P", prop, unit))
}

// waitUntil checks cond every 100ms until it holds, and fails t when it
// does not within timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		<-tick.C
	}
}

// workerUnits lists the app's worker units in state (e.g. "active"), or
// all that are loaded when state is "".
func (b *sdBox) workerUnits(t *testing.T, state string) []string {
	t.Helper()
	args := []string{"list-units", "--no-legend", "--plain", "--all", units.WorkerGlob(sdName) + ".service", units.WorkerGlob(sdName) + ".socket"}
	if state != "" {
		args = append(args, "--state="+state)
	}
	var names []string
	for _, line := range strings.Split(b.m.MustRun(t, "systemctl", args...), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// workerService returns the active service unit of worker w of app, of
// whatever generation (a rolling restart starts a worker's successor in
// units of its own, berth-APP-w1-g2.service), or "" when none or more than
// one is active.
func (b *sdBox) workerService(t *testing.T, app, w string) string {
	t.Helper()
	args := append([]string{"list-units", "--no-legend", "--plain", "--state=active"}, units.WorkerPatterns(app, w)...)
	var found []string
	for _, line := range strings.Split(b.m.MustRun(t, "systemctl", args...), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasSuffix(f[0], ".service") {
			found = append(found, f[0])
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// workerPids returns the main pids of the app's worker services.
func (b *sdBox) workerPids(t *testing.T) map[string]string {
	t.Helper()
	pids := map[string]string{}
	for _, w := range []string{"w1", "w2"} {
		if unit := b.workerService(t, sdName, w); unit != "" {
			pids[w] = b.show(t, unit, "MainPID")
		}
	}
	return pids
}

// get does one request and returns the body; it fails t on any error.
func (b *sdBox) get(t *testing.T) string {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	code, body := get(t, c, b.url)
	if code != http.StatusOK || !strings.HasPrefix(body, "pid ") {
		t.Fatalf("GET %s: %d %q", b.url, code, body)
	}
	return body
}

// resetStartLimit clears the service's start counter: the tests start
// berth more often than StartLimitBurst= allows in StartLimitIntervalSec=.
func (b *sdBox) resetStartLimit(t *testing.T) {
	t.Helper()
	b.m.MustRun(t, "systemctl", "reset-failed", sdName+".service")
}

// waitServing waits until berth is up with both workers ready.
func (b *sdBox) waitServing(t *testing.T) {
	t.Helper()
	waitUntil(t, 60*time.Second, "berth ready with 2 workers", func() bool {
		return b.show(t, sdName+".service", "ActiveState") == "active" &&
			strings.HasPrefix(b.show(t, sdName+".service", "StatusText"), "2/2 workers ready")
	})
}

func (b *sdBox) testSocketActivation(t *testing.T) {
	if st := b.show(t, sdName+".service", "ActiveState"); st != "inactive" {
		t.Fatalf("%s.service is %s before the first request; want inactive (socket activation)", sdName, st)
	}
	body := b.get(t)
	t.Logf("first request answered: %q", body)
	if st := b.show(t, sdName+".service", "ActiveState"); st != "active" && st != "activating" {
		t.Errorf("%s.service is %s after the first request", sdName, st)
	}
	b.waitServing(t)
}

func (b *sdBox) testWorkerUnits(t *testing.T) {
	got := b.workerUnits(t, "active")
	want := []string{"berth-hello-w1.service", "berth-hello-w1.socket", "berth-hello-w2.service", "berth-hello-w2.socket"}
	if strings.Join(sortedCopy(got), " ") != strings.Join(want, " ") {
		t.Fatalf("active worker units = %q, want %q", got, want)
	}
	for _, w := range []string{"w1", "w2"} {
		svc := units.WorkerService(sdName, w)
		props := map[string]string{
			"User":               sdUser,
			"Slice":              units.Slice(sdName),
			"MemoryMax":          strconv.Itoa(256 << 20),
			"CPUQuotaPerSecUSec": "500ms",
			"TasksMax":           "64",
			"SyslogIdentifier":   sdName,
			"WorkingDirectory":   sdAppDir,
			"CollectMode":        "inactive-or-failed",
			"NoNewPrivileges":    "yes",
			"PrivateTmp":         "yes",
			"BindsTo":            sdName + ".service",
		}
		for p, want := range props {
			if got := b.show(t, svc, p); got != want {
				t.Errorf("%s %s = %q, want %q", svc, p, got, want)
			}
		}
		if got := b.show(t, svc, "ProtectSystem"); got == "no" {
			t.Errorf("%s is not sandboxed: ProtectSystem=%s", svc, got)
		}
		sock := units.WorkerSocket(sdName, w)
		listen := b.show(t, sock, "Listen")
		if !strings.Contains(listen, "/run/berth/"+sdName+"/"+w+".sock") {
			t.Errorf("%s Listen = %q", sock, listen)
		}
		if mode := b.show(t, sock, "SocketMode"); mode != "0600" {
			t.Errorf("%s SocketMode = %s, want 0600", sock, mode)
		}
		out := b.m.MustRun(t, "systemd-analyze", "security", "--no-pager", svc)
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: no exposure level in:\n%s", svc, out)
		} else if x, _ := strconv.ParseFloat(m[1], 64); x > 4.0 {
			t.Errorf("%s exposure %s, want 4.0 or lower:\n%s", svc, m[1], out)
		} else {
			t.Logf("systemd-analyze security %s: exposure %s", svc, m[1])
		}
		// The process itself runs as the app's user.
		pid := b.show(t, svc, "MainPID")
		if u := strings.TrimSpace(b.m.MustRun(t, "stat", "-c", "%U", "/proc/"+pid)); u != sdUser {
			t.Errorf("%s pid %s runs as %q, want %q", svc, pid, u, sdUser)
		}
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func (b *sdBox) testStatus(t *testing.T) {
	out := b.m.MustRun(t, "systemctl", "status", "--no-pager", "--lines=0", sdName+".service")
	if !regexp.MustCompile(`Status: "2/2 workers ready, \d+ queued, \d+ requests served"`).MatchString(out) {
		t.Errorf("systemctl status shows no berth STATUS line:\n%s", out)
	}
	// WATCHDOG=1 every WatchdogSec/2 (1 s here) moves the timestamp on.
	first := b.show(t, sdName+".service", "WatchdogTimestampMonotonic")
	waitUntil(t, 5*time.Second, "a watchdog ping", func() bool {
		now := b.show(t, sdName+".service", "WatchdogTimestampMonotonic")
		return now != first && now != "0"
	})
}

func (b *sdBox) testKillWorker(t *testing.T) {
	unit := units.WorkerService(sdName, "w1")
	old := b.show(t, unit, "MainPID")
	b.m.MustRun(t, "sh", "-c", "kill -9 "+old)
	waitUntil(t, 30*time.Second, "w1 replaced", func() bool {
		pid := b.show(t, unit, "MainPID")
		return pid != old && pid != "0" && b.show(t, unit, "ActiveState") == "active"
	})
	journal := b.m.MustRun(t, "journalctl", "--no-pager", "-u", unit, "-u", sdName+".service")
	if !strings.Contains(journal, "Main process exited, code=killed, status=9/KILL") {
		t.Errorf("systemd did not report the kill in the journal:\n%s", journal)
	}
	if !regexp.MustCompile(`worker exited.*pid=` + old + `.*killed by signal 9`).MatchString(journal) {
		t.Errorf("berth did not log the worker's exit:\n%s", journal)
	}
	b.waitServing(t)
	for range 10 {
		b.get(t)
	}
}

// testReexec re-executes systemd, which reports every unit removed and
// then their state again: berth must keep its workers, and still see one
// die.
func (b *sdBox) testReexec(t *testing.T) {
	b.waitServing(t)
	before := b.workerPids(t)
	b.m.MustRun(t, "systemctl", "daemon-reexec")
	b.m.MustRun(t, "systemctl", "daemon-reload")
	b.get(t)
	if now := b.workerPids(t); now["w1"] != before["w1"] || now["w2"] != before["w2"] {
		t.Errorf("workers changed across daemon-reexec: %v, then %v", before, now)
	}
	b.testKillWorker(t)
	journal := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", sdName+".service")
	for _, pid := range before {
		if strings.Contains(journal, "pid "+pid+" ended") {
			t.Errorf("berth took worker pid %s for ended across daemon-reexec:\n%s", pid, journal)
		}
	}
}

// load is a steady, bounded client loop: one request at a time on a new
// connection each, until stopped or max requests.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex // protects errs
	errs       []string
	stop       chan struct{}
	done       chan struct{}
}

func startLoad(url string, max int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(l.done)
		for i := 0; i < max; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			resp, err := c.Get(url)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: %q", resp.Status, body)
				}
			}
			if err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err.Error())
				}
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
		}
	}()
	return l
}

func (l *load) finish() (ok, failed int64, errs []string) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// testUnderLoad runs `systemctl reload|restart` while a client loop runs,
// and wants every request answered.
func (b *sdBox) testUnderLoad(t *testing.T, verb string) {
	b.waitServing(t)
	b.resetStartLimit(t)
	oldBerth := b.show(t, sdName+".service", "MainPID")
	oldWorkers := b.workerPids(t)
	l := startLoad(b.url, 20000)
	waitUntil(t, 10*time.Second, "load running", func() bool { return l.ok.Load() >= 20 })

	start := time.Now()
	b.m.MustRun(t, "systemctl", verb, sdName+".service")
	waitUntil(t, 60*time.Second, verb+" done: new workers serving", func() bool {
		now := b.workerPids(t)
		return len(now) == 2 && now["w1"] != oldWorkers["w1"] && now["w2"] != oldWorkers["w2"] &&
			b.show(t, sdName+".service", "ActiveState") == "active" &&
			strings.HasPrefix(b.show(t, sdName+".service", "StatusText"), "2/2 workers ready")
	})
	took := time.Since(start)
	// Keep the load on a little longer on the new workers.
	after := l.ok.Load()
	waitUntil(t, 10*time.Second, "load after "+verb, func() bool { return l.ok.Load() >= after+20 })
	ok, failed, errs := l.finish()
	t.Logf("systemctl %s under load: %d requests answered, %d failed (%s to new workers)", verb, ok, failed, took.Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d requests failed during systemctl %s; first errors: %q", failed, verb, errs)
	}
	newBerth := b.show(t, sdName+".service", "MainPID")
	switch verb {
	case "reload":
		if newBerth != oldBerth {
			t.Errorf("reload restarted berth (pid %s → %s); want the same berth with new workers", oldBerth, newBerth)
		}
	case "restart":
		if newBerth == oldBerth {
			t.Errorf("restart kept berth's pid %s", oldBerth)
		}
	}
}

func (b *sdBox) testJournal(t *testing.T) {
	b.waitServing(t)
	pids := b.workerPids(t)
	want := fmt.Sprintf("sdtest app listening, pid %s, user %s", pids["w1"], sdUser)
	waitUntil(t, 10*time.Second, "app line in the journal", func() bool {
		out := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-t", sdName, "-u", units.WorkerService(sdName, "w1"))
		return strings.Contains(out, want)
	})
	if out := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", units.WorkerGlob(sdName)); !strings.Contains(out, want) {
		t.Errorf("journalctl -u %s does not show %q:\n%s", units.WorkerGlob(sdName), want, out)
	}
	out := b.m.MustRun(t, "berth", "logs", sdName)
	if !strings.Contains(out, want) {
		t.Errorf("berth logs %s does not show %q:\n%s", sdName, want, out)
	}
	if !strings.Contains(out, "worker ready") {
		t.Errorf("berth logs %s does not show berth's own lines:\n%s", sdName, out)
	}
}

// testLoopsBatch: under the unit berth init writes, berth serves on its
// default engine, the event loops, and they get their io_uring (the
// unit's SystemCallFilter=@system-service allows it, through @aio): the
// journal says so at each start.
func (b *sdBox) testLoopsBatch(t *testing.T) {
	r, err := uring.New(8)
	testenv.Need(t, err == nil, fmt.Sprintf("this kernel gives no io_uring (%v): the loops send plainly everywhere", err))
	r.Close()
	b.get(t) // starts berth, if nothing before did
	b.waitServing(t)
	b.m.MustRun(t, "journalctl", "--sync")
	out := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", sdName+".service", "--grep", "event loops")
	if !strings.Contains(out, "batching=true") || strings.Contains(out, "batching=false") {
		t.Errorf("berth's event loops do not batch their sends under its unit's sandbox:\n%s", out)
	}
}

// testLoopsWithoutRing: where the sandbox forbids io_uring (an
// administrator's SystemCallFilter=~@aio here; Docker's default seccomp
// profile does the same), berth still serves on its default engine, each
// send a system call of its own, and its start line says why and what to
// allow.
func (b *sdBox) testLoopsWithoutRing(t *testing.T) {
	const app = "plainsends"
	port := testenv.FreePort(t)
	b.installApp(t, app, port, "--workers 1")
	if err := b.m.WriteFile(t.Context(), "/etc/systemd/system/"+app+".service.d/no-io-uring.conf", []byte("[Service]\nSystemCallFilter=~@aio\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.m.MustRun(t, "systemctl", "daemon-reload")
	b.m.MustRun(t, "systemctl", "start", app+".socket")
	defer b.m.Run(context.Background(), "systemctl", "stop", app+".socket", app+".service")

	// Keep-alive requests on one connection, and a few connections at
	// once: every answer goes out through plain sends.
	c := &http.Client{Timeout: 60 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				resp, err := c.Get(url)
				if err != nil {
					t.Errorf("GET %s without io_uring: %v", url, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "pid ") {
					t.Errorf("GET %s without io_uring: %d %q %v", url, resp.StatusCode, body, err)
					return
				}
			}
		})
	}
	wg.Wait()

	b.m.MustRun(t, "journalctl", "--sync")
	out := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", app+".service", "--grep", "event loops")
	for _, want := range []string{"batching=false", "io_uring_setup: operation not permitted", "SystemCallFilter="} {
		if !strings.Contains(out, want) {
			t.Errorf("berth's start line under SystemCallFilter=~@aio lacks %q:\n%s", want, out)
		}
	}
	if st := b.show(t, app+".service", "ActiveState"); st != "active" {
		t.Errorf("%s.service is %s after serving without io_uring; want active", app, st)
	}
}

// testHeldUpload: an upload past the buffer's memory share is held in a
// file before it reaches a worker, under the unit's sandbox (ProtectSystem=
// strict; the file goes to the service's private /var/tmp). berth must
// answer it and log no failure to hold it.
func (b *sdBox) testHeldUpload(t *testing.T) {
	b.get(t) // starts berth, if nothing before did
	b.waitServing(t)
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(b.url+"upload", "application/octet-stream", bytes.NewReader(bytes.Repeat([]byte("u"), 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "pid ") {
		t.Fatalf("POST of 2 MiB: %s %q", resp.Status, body)
	}
	b.m.MustRun(t, "journalctl", "--sync")
	if out := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", sdName+".service"); strings.Contains(out, "cannot hold") {
		t.Errorf("berth could not hold the upload under its sandbox:\n%s", out)
	}
}

// alivePid reports whether pid (a pid inside the container) exists.
func (b *sdBox) alivePid(t *testing.T, pid string) bool {
	_, err := b.m.Run(t.Context(), "sh", "-c", "kill -0 "+pid)
	return err == nil
}

func (b *sdBox) testKillBerth(t *testing.T) {
	b.waitServing(t)
	b.resetStartLimit(t)
	berth := b.show(t, sdName+".service", "MainPID")
	old := b.workerPids(t)
	b.m.MustRun(t, "sh", "-c", "kill -9 "+berth)
	// systemd stops the bound workers at once, then restarts berth
	// (Restart=on-failure), which makes new ones.
	waitUntil(t, 30*time.Second, "old workers gone", func() bool {
		return !b.alivePid(t, old["w1"]) && !b.alivePid(t, old["w2"])
	})
	b.waitServing(t)
	now := b.workerPids(t)
	if now["w1"] == old["w1"] || now["w2"] == old["w2"] {
		t.Errorf("workers survived berth's SIGKILL: before %v, after %v", old, now)
	}
	if n := len(b.workerUnits(t, "active")); n != 4 {
		t.Errorf("%d worker units active after berth's restart, want 4: %q", n, b.workerUnits(t, "active"))
	}
	b.get(t)
}

func (b *sdBox) testStop(t *testing.T) {
	b.waitServing(t)
	old := b.workerPids(t)
	b.m.MustRun(t, "systemctl", "stop", sdName+".socket", sdName+".service")
	// A stopped unit may stay loaded a while (inactive); none may run.
	if left := b.workerUnits(t, "active,activating,deactivating,reloading"); len(left) > 0 {
		t.Errorf("worker units left running after systemctl stop: %q", left)
	}
	for w, pid := range old {
		if b.alivePid(t, pid) {
			t.Errorf("worker %s (pid %s) still running after systemctl stop", w, pid)
		}
	}
	if out, _ := b.m.Run(t.Context(), "ls", "/run/berth/"+sdName); strings.Contains(out, ".sock") {
		t.Errorf("worker sockets left in /run/berth/%s: %s", sdName, out)
	}
	// Back to serving for the next test.
	b.m.MustRun(t, "systemctl", "start", sdName+".socket")
}

// testLeftovers makes units under a worker's names, as a crashed berth
// could leave them running, and starts berth: a second app, "left", whose
// units were never used in this container.
func (b *sdBox) testLeftovers(t *testing.T) {
	const app = "left"
	port := testenv.FreePort(t)
	b.installApp(t, app, port, "--workers 1")
	unit := strings.TrimSuffix(units.WorkerService(app, "w1"), ".service")
	b.m.MustRun(t, "systemd-run", "--unit="+unit, "--socket-property=ListenStream=/run/berth-leftover.sock", "/bin/sleep", "600")
	b.m.MustRun(t, "systemctl", "start", unit+".service")
	sleeper := b.show(t, unit+".service", "MainPID")
	// And a later generation's pair, as a crash in a rolling restart
	// leaves it.
	gen := strings.TrimSuffix(units.WorkerGenService(app, "w1", 3), ".service")
	b.m.MustRun(t, "systemd-run", "--unit="+gen, "--socket-property=ListenStream=/run/berth-leftover-g3.sock", "/bin/sleep", "600")
	b.m.MustRun(t, "systemctl", "start", gen+".service")
	genSleeper := b.show(t, gen+".service", "MainPID")

	b.m.MustRun(t, "systemctl", "start", app+".socket")
	defer b.m.Run(context.Background(), "systemctl", "stop", app+".socket", app+".service")
	c := &http.Client{Timeout: 60 * time.Second}
	if code, body := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port)); code != http.StatusOK {
		t.Fatalf("app %s with leftover units answered %d %q", app, code, body)
	}
	if b.alivePid(t, sleeper) {
		t.Errorf("leftover process %s of %s.service still running", sleeper, unit)
	}
	if b.alivePid(t, genSleeper) {
		t.Errorf("leftover process %s of %s.service still running", genSleeper, gen)
	}
	for _, u := range []string{gen + ".service", gen + ".socket"} {
		if st := b.show(t, u, "ActiveState"); st == "active" {
			t.Errorf("leftover unit %s still active", u)
		}
	}
	if l := b.show(t, unit+".socket", "Listen"); strings.Contains(l, "leftover") {
		t.Errorf("leftover socket unit kept: Listen=%s", l)
	}
	journal := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", app+".service")
	if !strings.Contains(journal, "stopping leftover worker units") {
		t.Errorf("berth did not report the leftovers:\n%s", journal)
	}
}

// testScaling serves a third app, "scale", between 1 and 2 workers: load
// adds w2 (a new unit pair), and once idle w2's service and socket stop.
func (b *sdBox) testScaling(t *testing.T) {
	const app = "scale"
	port := testenv.FreePort(t)
	b.installApp(t, app, port, "--min-workers 1 --max-workers 2 --idle-timeout 2s")
	b.m.MustRun(t, "systemctl", "start", app+".socket")
	defer b.m.Run(context.Background(), "systemctl", "stop", app+".socket", app+".service")
	w2 := []string{units.WorkerService(app, "w2"), units.WorkerSocket(app, "w2")}
	active := func() int {
		n := 0
		for _, u := range w2 {
			if b.show(t, u, "ActiveState") == "active" {
				n++
			}
		}
		return n
	}

	var loads []*load
	for range 4 {
		loads = append(loads, startLoad(fmt.Sprintf("http://127.0.0.1:%d/", port), 100000))
	}
	waitUntil(t, 30*time.Second, "w2's units active under load", func() bool { return active() == 2 })
	if u := b.show(t, w2[0], "User"); u != sdUser {
		t.Errorf("%s runs as %q, want %q", w2[0], u, sdUser)
	}
	var ok, failed int64
	for _, l := range loads {
		o, f, errs := l.finish()
		ok, failed = ok+o, failed+f
		if f > 0 {
			t.Errorf("%d requests failed while scaling up; first errors: %q", f, errs)
		}
	}
	t.Logf("scaling up under load: %d requests answered, %d failed", ok, failed)
	waitUntil(t, 30*time.Second, "w2's service and socket stopped once idle", func() bool { return active() == 0 })
	if st := b.show(t, units.WorkerService(app, "w1"), "ActiveState"); st != "active" {
		t.Errorf("w1 is %s after scaling down", st)
	}
}

// testFailingApp serves an app that exits at once: berth's log and status
// quote the app's last output, taken from the worker's journal; its 503
// answer says the app fails to start and shows visitors no output.
func (b *sdBox) testFailingApp(t *testing.T) {
	const app, dir = "crash", "/srv/crash"
	crash := "console.error('sdtest boom: DATABASE_URL is not set');\nprocess.exit(3);\n"
	if err := b.m.WriteFile(t.Context(), dir+"/app.js", []byte(crash), 0o644); err != nil {
		t.Fatal(err)
	}
	b.m.MustRun(t, "chown", "-R", sdUser+":", dir)
	port := testenv.FreePort(t)
	b.installAppDir(t, app, dir, port, "--workers", "1")
	b.m.MustRun(t, "systemctl", "start", app+".socket")
	defer b.m.Run(context.Background(), "systemctl", "stop", app+".socket", app+".service")
	c := &http.Client{Timeout: 60 * time.Second}
	code, body := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port))
	t.Logf("failing app answered %d: %s", code, body)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "fails to start") || strings.Contains(body, "DATABASE_URL") {
		t.Errorf("failing app answered %d %q; want 503 saying it fails to start, without the app's output", code, body)
	}
	waitUntil(t, 10*time.Second, "the app's output in berth's status", func() bool {
		return strings.Contains(b.show(t, app+".service", "StatusText"), "failing")
	})
	journal := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", app+".service")
	if !strings.Contains(journal, "sdtest boom: DATABASE_URL is not set") || !strings.Contains(journal, "exited with status 3") {
		t.Errorf("berth's error does not quote the app's output:\n%s", journal)
	}
}

// testGenericApp serves the Python app of testdata/pyfd (fd 3, READY=1 by
// sd_notify datagram) as a worker unit, once reporting and once not (berth
// then probes its socket).
func (b *sdBox) testGenericApp(t *testing.T) {
	_, err := os.Stat("/usr/bin/python3")
	testenv.Need(t, err == nil, "/usr/bin/python3 not installed (apt-get install python3)")
	src, err := os.ReadFile("testdata/pyfd/app.py")
	if err != nil {
		t.Fatal(err)
	}
	const dir = "/srv/py"
	if err := b.m.WriteFile(t.Context(), dir+"/app.py", src, 0o644); err != nil {
		t.Fatal(err)
	}
	b.m.MustRun(t, "chown", "-R", sdUser+":", dir)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"pynotify", nil},
		{"pyprobe", []string{"--env", "NO_NOTIFY=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			args := append([]string{"--workers", "1", "--app-type", "generic", "--command", "/usr/bin/python3 " + dir + "/app.py"}, tc.flags...)
			b.installAppDir(t, tc.name, dir, port, args...)
			b.m.MustRun(t, "systemctl", "start", tc.name+".socket")
			defer b.m.Run(context.Background(), "systemctl", "stop", tc.name+".socket", tc.name+".service")
			c := &http.Client{Timeout: 60 * time.Second}
			code, body := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port))
			if code != http.StatusOK || !strings.Contains(body, "via fd 3") {
				t.Errorf("generic app answered %d %q", code, body)
			}
			if u := b.show(t, units.WorkerService(tc.name, "w1"), "User"); u != sdUser {
				t.Errorf("worker runs as %q, want %q", u, sdUser)
			}
		})
	}
}

// testRootOwned checks that berth does not run workers as root just
// because the app directory is root's.
func (b *sdBox) testRootOwned(t *testing.T) {
	const dir = "/srv/rootapp"
	if err := b.m.WriteFile(t.Context(), path.Join(dir, "app.js"), []byte(sdApp), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	// berth reports READY once its workers fail, so systemd-run returns.
	b.m.MustRun(t, "systemd-run", "--unit=rootapp", "--collect", "--property=Type=notify",
		"--property=TimeoutStartSec=60", "/usr/local/bin/berth", "serve", dir, "--name", "rootapp",
		"--workers", "1", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	defer b.m.Run(context.Background(), "systemctl", "stop", "rootapp.service")
	if st := b.show(t, "rootapp.service", "StatusText"); !strings.Contains(st, "owned by root") {
		t.Errorf("berth's status does not say why the workers fail: %q", st)
	}
	journal := b.m.MustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", "rootapp.service")
	if !strings.Contains(journal, "owned by root, and workers do not run as root unless asked") {
		t.Errorf("berth did not refuse root workers for a root-owned app:\n%s", journal)
	}
}

// testIdle serves an app with --min-workers 0 and --exit-idle-time: no
// worker until the first request (which waits for the one it starts),
// berth exits once idle with no worker unit left, and the socket starts it
// again on the next connection.
func (b *sdBox) testIdle(t *testing.T) {
	const app = "idle"
	port := testenv.FreePort(t)
	b.installApp(t, app, port, "--min-workers 0 --max-workers 1 --idle-timeout 1s --exit-idle-time 3s")
	b.m.MustRun(t, "systemctl", "start", app+".socket")
	defer b.m.Run(context.Background(), "systemctl", "stop", app+".socket", app+".service")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	svc, w1 := app+".service", units.WorkerService(app, "w1")
	for round := 1; round <= 2; round++ {
		if st := b.show(t, svc, "ActiveState"); st != "inactive" {
			t.Fatalf("round %d: %s is %s before the request; want inactive", round, svc, st)
		}
		if code, body := get(t, c, url); code != http.StatusOK || !strings.HasPrefix(body, "pid ") {
			t.Fatalf("round %d: first request answered %d %q", round, code, body)
		}
		waitUntil(t, 30*time.Second, "berth exits once idle", func() bool {
			return b.show(t, svc, "ActiveState") == "inactive"
		})
		if r := b.show(t, svc, "Result"); r != "success" {
			t.Errorf("round %d: berth ended with result %s, want success", round, r)
		}
		if st := b.show(t, w1, "ActiveState"); st == "active" {
			t.Errorf("round %d: %s still active after berth exited", round, w1)
		}
		if st := b.show(t, app+".socket", "ActiveState"); st != "active" && st != "listening" {
			t.Fatalf("round %d: %s.socket is %s: the next connection would not start berth", round, app, st)
		}
	}
}

// testBrokenReload: with one worker, `systemctl reload` (ExecReload= is
// `berth restart`) and `berth restart` of a release that fails to start
// fail, saying why, and the old worker answers every request throughout:
// its successor starts in units of its own (berth-deploy-w1-g2.*) beside
// the serving ones, which stop only once a successor is ready. A fixed
// release then restarts.
func (b *sdBox) testBrokenReload(t *testing.T) {
	const app, dir = "deploy", "/srv/deploy"
	if err := b.m.WriteFile(t.Context(), dir+"/app.js", []byte(sdApp), 0o644); err != nil {
		t.Fatal(err)
	}
	b.m.MustRun(t, "chown", "-R", sdUser+":", dir)
	port := testenv.FreePort(t)
	b.installAppDir(t, app, dir, port, "--workers", "1", "--spawn-timeout", "10s")
	b.m.MustRun(t, "systemctl", "start", app+".socket")
	defer b.m.Run(context.Background(), "systemctl", "stop", app+".socket", app+".service")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if code, body := get(t, c, url); code != http.StatusOK {
		t.Fatalf("first request: %d %q", code, body)
	}
	waitUntil(t, 60*time.Second, "1 worker ready", func() bool {
		return strings.HasPrefix(b.show(t, app+".service", "StatusText"), "1/1 workers ready")
	})
	oldUnit := b.workerService(t, app, "w1")
	if oldUnit != units.WorkerService(app, "w1") {
		t.Fatalf("worker w1 runs in %q, want %s", oldUnit, units.WorkerService(app, "w1"))
	}
	oldPid := b.show(t, oldUnit, "MainPID")
	l := startLoad(url, 1000000)
	waitUntil(t, 10*time.Second, "load running", func() bool { return l.ok.Load() >= 20 })

	broken := "console.error('sdtest: release 2 cannot start');\nprocess.exit(4);\n"
	if err := b.m.WriteFile(t.Context(), dir+"/app.js", []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := b.m.Run(t.Context(), "systemctl", "reload", app+".service"); err == nil {
		t.Errorf("systemctl reload of a broken release succeeded:\n%s", out)
	}
	out, err := b.m.Run(t.Context(), "berth", "restart", app)
	if err == nil {
		t.Errorf("berth restart of a broken release succeeded:\n%s", out)
	} else if !strings.Contains(out, "exited with status 4") {
		t.Errorf("berth restart of a broken release does not say why:\n%s", out)
	} else {
		t.Logf("berth restart of a broken release: %s", firstLine(out))
	}
	after := l.ok.Load()
	waitUntil(t, 10*time.Second, "load after the failed restarts", func() bool { return l.ok.Load() >= after+20 })
	if unit := b.workerService(t, app, "w1"); unit != oldUnit || b.show(t, oldUnit, "MainPID") != oldPid {
		t.Errorf("after the failed restarts w1 runs in %q, pid %s; want the old worker, %s pid %s", unit, b.show(t, oldUnit, "MainPID"), oldUnit, oldPid)
	}
	// The failed releases' units are gone, or at least stopped.
	args := append([]string{"list-units", "--no-legend", "--plain", "--state=active,activating,deactivating,reloading"}, units.WorkerPatterns(app, "w1")...)
	if got, want := strings.Join(sortedCopy(linesFirstField(b.m.MustRun(t, "systemctl", args...))), " "), units.WorkerService(app, "w1")+" "+units.WorkerSocket(app, "w1"); got != want {
		t.Errorf("worker units running after the failed restarts: %q, want %q", got, want)
	}
	if st := b.show(t, app+".service", "StatusText"); !strings.Contains(st, "last restart failed") {
		t.Errorf("status line after a failed restart: %q", st)
	}
	if st := b.show(t, app+".service", "ActiveState"); st != "active" {
		t.Errorf("berth is %s after a failed restart, want active", st)
	}

	fixed := strings.Replace(sdApp, "'pid '", "'release 3 pid '", 1)
	if err := b.m.WriteFile(t.Context(), dir+"/app.js", []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	b.m.MustRun(t, "berth", "restart", app)
	waitUntil(t, 30*time.Second, "the old worker's units stopped", func() bool {
		return b.show(t, oldUnit, "ActiveState") != "active" && b.workerService(t, app, "w1") != ""
	})
	newUnit := b.workerService(t, app, "w1")
	after = l.ok.Load()
	waitUntil(t, 10*time.Second, "load after the restart", func() bool { return l.ok.Load() >= after+20 })
	if code, body := get(t, c, url); code != http.StatusOK || !strings.HasPrefix(body, "release 3 pid ") {
		t.Errorf("after the fixed release's restart: %d %q", code, body)
	}

	// Passenger's convention, which deploy scripts use: the app's user
	// touches tmp/restart.txt, and the same rolling restart follows.
	next := strings.Replace(sdApp, "'pid '", "'release 4 pid '", 1)
	if err := b.m.WriteFile(t.Context(), dir+"/app.js", []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	b.m.MustRun(t, "install", "-d", "-o", sdUser, dir+"/tmp")
	touch := func() { b.m.MustRun(t, "runuser", "-u", sdUser, "--", "touch", dir+"/tmp/restart.txt") }
	touch()
	touchedAgain := false
	waitUntil(t, 30*time.Second, "release 4 answering after touching tmp/restart.txt", func() bool {
		if code, body := get(t, c, url); code == http.StatusOK && strings.HasPrefix(body, "release 4 pid ") {
			return true
		}
		// systemd in the test container once failed to set up the next
		// generation's unit a second after the last one stopped
		// (status 219/CGROUP: systemd's own failure, before the app ran).
		// berth starts such a unit once more; should systemd fail that
		// too, berth keeps the old worker, as it should: touch again, once.
		if !touchedAgain && strings.Contains(b.show(t, app+".service", "StatusText"), "last restart failed") {
			if out, _ := b.m.Run(t.Context(), "journalctl", "--no-pager", "-u", "berth-"+app+"-w1-g*"); strings.Contains(out, "219/CGROUP") {
				t.Logf("systemd failed to set up the new worker's unit (219/CGROUP); touching tmp/restart.txt again")
				touchedAgain = true
				touch()
			}
		}
		return false
	})
	if unit := b.workerService(t, app, "w1"); unit == newUnit {
		t.Errorf("after touching tmp/restart.txt w1 still runs in %s; want the next generation's unit", unit)
	}
	after = l.ok.Load()
	waitUntil(t, 10*time.Second, "load after the restart by tmp/restart.txt", func() bool { return l.ok.Load() >= after+20 })

	ok, failed, errs := l.finish()
	t.Logf("two failed restarts and two good ones (berth restart, tmp/restart.txt) under load: %d requests answered, %d failed; w1 now in %s", ok, failed, b.workerService(t, app, "w1"))
	if failed > 0 {
		t.Errorf("%d requests failed; first errors: %q", failed, errs)
	}
	if st := b.show(t, app+".service", "StatusText"); strings.Contains(st, "last restart failed") {
		t.Errorf("status line after a good restart: %q", st)
	}
}

// linesFirstField returns the first field of each non-empty line of out.
func linesFirstField(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
