package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/packaging/testenv"
	"berth/spawner"
)

// loadURL sends requests to url from clients goroutines, each pausing pause
// between requests, until stop closes; it returns how many answered 200
// and the other outcomes.
func loadURL(url string, clients int, pause time.Duration, stop <-chan struct{}) (ok int, failed []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
				resp, err := c.Get(url)
				var why string
				if err != nil {
					why = err.Error()
				} else {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						why = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
					}
				}
				mu.Lock()
				if why == "" {
					ok++
				} else {
					failed = append(failed, why)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok, failed
}

// TestCrashingRequestsLeaveOthersServed: a request that crashes its worker,
// once a second, is no crash loop: the crashed worker is replaced at once
// and at least 99% of the other requests succeed (issue 10, point 9).
//
// A crash also takes down the requests in flight on that worker (502):
// about crash rate × latency / 2 of all requests, which a loaded test
// machine (latency of 100 ms and more) makes large, whatever berth does.
// So the 99% counts those apart; on an idle machine the share of all
// other requests answered is above 99% too (99.7% measured). The crashing
// request is a POST: a GET that reached the app may be sent again by the
// proxy's transport, and crash another worker.
func TestCrashingRequestsLeaveOthersServed(t *testing.T) {
	// One worker: every crash leaves none, so any backoff is seen (with
	// the old one, 0.5 s doubling, the sixth crash left no worker for 8 s).
	b := startBerth(t, "testdata/crashy", "--workers", "1", "--queue-timeout", "5s")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	stop := make(chan struct{})
	type result struct {
		ok     int
		failed []string
	}
	res := make(chan result)
	go func() {
		ok, failed := loadURL(b.URL+"/", 2, 10*time.Millisecond, stop)
		res <- result{ok, failed}
	}()
	crashes := 0
	for tick := time.Tick(time.Second); crashes < 10; crashes++ {
		<-tick
		if resp, err := http.Post(b.URL+"/crash", "text/plain", nil); err == nil {
			resp.Body.Close()
		}
	}
	close(stop)
	r := <-res
	var inFlight int
	var others []string
	for _, f := range r.failed {
		if strings.HasPrefix(f, "502 ") {
			inFlight++
		} else {
			others = append(others, f)
		}
	}
	total := r.ok + len(r.failed)
	t.Logf("%d crashing requests; other requests: %d of %d succeeded, %d lost in flight on a crashing worker (502), %d failed otherwise",
		crashes, r.ok, total, inFlight, len(others))
	if n := strings.Count(b.Output(), `msg="worker exited"`); n < crashes/2 {
		t.Fatalf("only %d workers exited for %d crashing requests", n, crashes)
	}
	if total < 50 || float64(r.ok) < 0.99*float64(r.ok+len(others)) {
		t.Fatalf("%d of %d requests not in flight on a crashing worker succeeded, want at least 99%%; failures: %q",
			r.ok, r.ok+len(others), others[:min(5, len(others))])
	}
}

// TestMaxRequestsRecycles: with --max-requests a worker is replaced after
// about that many requests, its successor ready first: no request fails.
func TestMaxRequestsRecycles(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "1", "--max-requests", "20")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	stop := make(chan struct{})
	done := make(chan struct{})
	var ok int
	var failed []string
	go func() {
		defer close(done)
		ok, failed = loadURL(b.URL+"/", 2, 20*time.Millisecond, stop)
	}()
	b.WaitForN(`msg="worker recycled".*reason="max requests: served`, 2, 20*time.Second)
	close(stop)
	<-done
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed while workers were recycled: %q", len(failed), ok+len(failed), failed[:min(5, len(failed))])
	}
	st := statusOf(t, b)
	if st.Recycles < 2 || !strings.HasPrefix(st.Workers[0].LastRecycle, "max requests") {
		t.Errorf("status: %d recycles, last %q", st.Recycles, st.Workers[0].LastRecycle)
	}
}

// TestMemoryLimitRecycles: a worker that leaks past --memory-limit is
// replaced, its successor ready first: no request fails.
func TestMemoryLimitRecycles(t *testing.T) {
	b := startBerth(t, "testdata/crashy", "--workers", "1", "--memory-limit", "150M")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	for i := 0; i < 5; i++ {
		code, body := get(t, nil, b.URL+"/leak")
		if code != 200 {
			t.Fatalf("leak %d: %d %s", i, code, body)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var ok int
	var failed []string
	go func() {
		defer close(done)
		ok, failed = loadURL(b.URL+"/", 2, 20*time.Millisecond, stop)
	}()
	b.WaitFor(`msg="worker recycled".*reason="memory: .* over the limit of 150 MiB"`, 20*time.Second)
	// Let the load reach the new worker before it stops.
	deadline := time.Now().Add(20 * time.Second)
	for st := statusOf(t, b); len(st.Workers) != 1 || st.Workers[0].Served < 10; st = statusOf(t, b) {
		if time.Now().After(deadline) {
			t.Fatalf("the new worker served %+v within 20 s, want 10 requests", st.Workers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-done
	if len(failed) > 0 || ok == 0 {
		t.Fatalf("%d of %d requests failed while the leaking worker was recycled: %q", len(failed), ok+len(failed), failed[:min(5, len(failed))])
	}
	st := statusOf(t, b)
	if st.Recycles != 1 || st.Workers[0].Memory == 0 || st.Workers[0].Memory > 150<<20 {
		t.Errorf("status after the recycle: %d recycles, worker memory %d", st.Recycles, st.Workers[0].Memory)
	}
	out, err := exec.Command(berthBin, "status", "--memory", st.App).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "berth") || !strings.Contains(string(out), "total (1 workers)") {
		t.Errorf("berth status --memory: %v\n%s", err, out)
	}
}

func statusOf(t *testing.T, b *berthProc) appStatus {
	t.Helper()
	name := ""
	for i, a := range b.cmd.Args {
		if a == "--name" {
			name = b.cmd.Args[i+1]
		}
	}
	if name == "" {
		name = filepath.Base(b.cmd.Args[2])
	}
	out, err := exec.Command(berthBin, "status", "--json", name).CombinedOutput()
	if err != nil {
		t.Fatalf("berth status: %v\n%s", err, out)
	}
	var st appStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	return st
}

// TestSlowStartExplainsItself: an app that never listens is reported
// within 12 s in the log (with its output) and in berth status, and a
// visitor's 503 never shows its output.
func TestSlowStartExplainsItself(t *testing.T) {
	b := startBerth(t, "testdata/never", "--workers", "1", "--queue-timeout", "1s")
	line := b.WaitFor(`msg="worker not ready yet"`, 12*time.Second)
	for _, want := range []string{`waiting="has not called listen() yet"`, "booting the never-listening app", "spawn_timeout=1m0s", "for=10s"} {
		if !strings.Contains(line, want) {
			t.Errorf("warning does not say %q: %s", want, line)
		}
	}
	st := statusOf(t, b)
	if len(st.Starting) != 1 || st.Starting[0].Pid == 0 || st.Starting[0].Waiting != "has not called listen() yet" ||
		!strings.Contains(strings.Join(st.Starting[0].Output, "\n"), "still waiting for a database") {
		t.Errorf("status lists starting workers %+v", st.Starting)
	}
	out, _ := exec.Command(berthBin, "status", "never").CombinedOutput()
	if !strings.Contains(string(out), "starting for 1") || !strings.Contains(string(out), "of 1m0s: has not called listen() yet") {
		t.Errorf("berth status does not list the starting worker:\n%s", out)
	}
	code, body := get(t, nil, b.URL+"/")
	if code != 503 || strings.Contains(body, "database") {
		t.Errorf("visitor got %d %q: want 503 without the app's output", code, body)
	}
}

// TestStartErrorsStayPrivate: the 503 of an app that fails to start says
// so, but shows its output (stack trace, paths) only with
// --friendly-error-pages.
func TestStartErrorsStayPrivate(t *testing.T) {
	for _, friendly := range []bool{false, true} {
		t.Run(fmt.Sprintf("friendly=%v", friendly), func(t *testing.T) {
			args := []string{"--workers", "1"}
			if friendly {
				args = append(args, "--friendly-error-pages")
			}
			b := startBerth(t, "testdata/throws", args...)
			b.WaitFor(`worker failed to start`, 20*time.Second)
			code, body := get(t, nil, b.URL+"/")
			if code != 503 || !strings.Contains(body, "fails to start") {
				t.Fatalf("got %d %q, want 503 saying the app fails to start", code, body)
			}
			if shows := strings.Contains(body, "boom at start") || strings.Contains(body, "app.js"); shows != friendly {
				t.Errorf("503 body shows the app's output: %v, want %v:\n%s", shows, friendly, body)
			}
		})
	}
}

// TestBrokenDeployKeepsOldWorkers: berth restart with a new version that
// fails to start exits non-zero saying why, and the old workers keep
// serving; touching tmp/restart.txt restarts the workers too.
func TestBrokenDeployKeepsOldWorkers(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	dir := t.TempDir()
	good, err := os.ReadFile("testdata/echo/app.js")
	if err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "app.js")
	if err := os.WriteFile(app, good, 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBerth(t, dir, "--workers", "2", "--name", "deploy", "--spawn-timeout", "5s")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	old := map[int]bool{}
	for i := 0; i < 10; i++ {
		old[getEcho(t, nil, b.URL+"/").Pid] = true
	}

	if err := os.WriteFile(app, []byte("throw new Error('syntax of release 2 is broken');\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(berthBin, "restart", "deploy").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "release 2 is broken") {
		t.Fatalf("berth restart of a broken version: %v, %s; want non-zero exit saying why", err, out)
	}
	for i := 0; i < 10; i++ {
		if p := getEcho(t, nil, b.URL+"/").Pid; !old[p] {
			t.Fatalf("pid %d answers: want the old workers %v", p, old)
		}
	}

	if err := os.WriteFile(app, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", "restart.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(`msg="rolling restart" .*by=tmp/restart.txt`, 5*time.Second)
	b.WaitFor(`msg="rolling restart done"`, 20*time.Second)
	for i := 0; i < 10; i++ {
		if p := getEcho(t, nil, b.URL+"/").Pid; old[p] {
			t.Fatalf("old worker %d still answers after touching tmp/restart.txt", p)
		}
	}
}

// TestRestartFileDuringARestart: touching tmp/restart.txt while a rolling
// restart runs is not lost: another restart follows once that one ends,
// since the release may have changed after it began (deploy scripts
// touch the file without knowing what else is restarting the app).
func TestRestartFileDuringARestart(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	dir := t.TempDir()
	// While dir/slow exists the app takes 3 s to listen, so the restart
	// berth restart begins is still running when the file is touched.
	app := `const http = require('http');
const fs = require('fs');
const delay = fs.existsSync(__dirname + '/slow') ? 3000 : 0;
setTimeout(() => http.createServer((req, res) => res.end(String(process.pid))).listen(3000), delay);
`
	for name, data := range map[string]string{"app.js": app, "tmp/.keep": ""} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := startBerth(t, dir, "--workers", "1", "--name", "touch", "--spawn-timeout", "20s")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	if err := os.WriteFile(filepath.Join(dir, "slow"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	restart := exec.Command(berthBin, "restart", "touch")
	restart.Stdout, restart.Stderr = &out, &out
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(`msg="rolling restart" .*by="berth restart"`, 10*time.Second)
	if err := os.WriteFile(filepath.Join(dir, "tmp", "restart.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := restart.Wait(); err != nil {
		t.Fatalf("berth restart: %v\n%s", err, out.String())
	}
	b.WaitFor(`msg="rolling restart" .*by=tmp/restart.txt`, 10*time.Second)
	b.WaitForN(`msg="rolling restart done"`, 2, 20*time.Second)
}

// TestMinWorkersZero: with --min-workers 0 no worker runs until a request
// comes; that request waits in the queue for the worker it started, and
// the worker goes again after --idle-timeout.
func TestMinWorkersZero(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--min-workers", "0", "--max-workers", "2", "--idle-timeout", "1s")
	if st := statusOf(t, b); st.Wanted != 0 || len(st.Workers) != 0 || len(st.Starting) != 0 {
		t.Fatalf("status before any request: %+v; want no worker", st)
	}
	if r := getEcho(t, nil, b.URL+"/"); r.Pid == 0 {
		t.Fatal("no answer")
	}
	b.WaitFor(`msg="scaling workers" .*from=1 to=0`, 10*time.Second)
	if r := getEcho(t, nil, b.URL+"/"); r.Pid == 0 {
		t.Fatal("no answer after scaling to zero")
	}
}

// TestExitIdleTime: under socket activation, --exit-idle-time makes berth
// exit (status 0) once no request came for that long.
func TestExitIdleTime(t *testing.T) {
	addr, f := socketFile(t)
	cmd := exec.Command(berthBin, spawner.TrampolineArg, berthBin, "serve", "testdata/echo", "--min-workers", "0", "--max-workers", "1", "--exit-idle-time", "2s")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=http")
	b := startBerthCmd(t, cmd)
	start := time.Now()
	for time.Since(start) < 3*time.Second { // requests keep it alive
		getEcho(t, nil, "http://"+addr+"/")
		time.Sleep(200 * time.Millisecond)
	}
	if code := b.Wait(10 * time.Second); code != 0 {
		t.Fatalf("berth exited with %d, want 0", code)
	}
	if !strings.Contains(b.Output(), `msg="exiting: no request came"`) || time.Since(start) < 4*time.Second {
		t.Fatalf("berth exited after %s:\n%s", time.Since(start), b.Output())
	}
}

// TestBlockedLoopAndOutOfBandWork: a worker whose event loop is blocked
// (no heartbeat for --max-blocked) gets no new request while the other
// answers; its request gets 504 at --max-request-time, and it is then
// replaced. A response asking for out-of-band work makes its worker run it.
func TestBlockedLoopAndOutOfBandWork(t *testing.T) {
	testenv.NeedCommand(t, "python3")
	blockedLoopAndOOB(t, startBerth(t, "testdata/pyloop", "--workers", "2", "--app-type", "generic", "--command", "python3 -u app.py",
		"--max-blocked", "1s", "--max-request-time", "4s", "--stop-timeout", "1s"))
}

// TestBlockedNodeLoop is TestBlockedLoopAndOutOfBandWork with a real Node
// app and the loader's heartbeats.
func TestBlockedNodeLoop(t *testing.T) {
	blockedLoopAndOOB(t, startBerth(t, "testdata/blocky", "--workers", "2", "--max-blocked", "1s", "--max-request-time", "4s", "--stop-timeout", "1s"))
}

// blockedLoopAndOOB drives b's app (2 workers, --max-blocked 1s,
// --max-request-time 4s): /block blocks its worker's loop, which leaves
// rotation while the other answers; /block gets 504 and its worker is
// recycled; /oob asks for out-of-band work, which runs.
func blockedLoopAndOOB(t *testing.T, b *berthProc) {
	t.Helper()
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	blocked := make(chan int, 1)
	go func() {
		code, _ := get(t, nil, b.URL+"/block")
		blocked <- code
	}()
	b.WaitFor(`msg="worker's event loop is blocked; no new request goes to it"`, 5*time.Second)
	for i := 0; i < 10; i++ {
		start := time.Now()
		if code, body := get(t, nil, b.URL+"/"); code != 200 || time.Since(start) > time.Second {
			t.Fatalf("request %d while a worker is blocked: %d %q after %s", i, code, body, time.Since(start))
		}
	}
	if code := <-blocked; code != 504 {
		t.Errorf("the blocking request got %d, want 504 at --max-request-time", code)
	}
	b.WaitFor(`msg="worker recycled".*reason="event loop blocked past the maximum request time"`, 10*time.Second)
	if code, _ := get(t, nil, b.URL+"/oob"); code != 200 {
		t.Fatalf("/oob: %d", code)
	}
	b.WaitFor(`out-of-band work done`, 5*time.Second)
}
