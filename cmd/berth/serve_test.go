package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/spawner"
)

type echoReply struct {
	Pid           int     `json:"pid"`
	Worker        string  `json:"worker"`
	Host          string  `json:"host"`
	XFF           string  `json:"xff"`
	XFProto       string  `json:"xfproto"`
	XFHost        string  `json:"xfhost"`
	RemoteAddress *string `json:"remoteAddress"`
}

func getEcho(t *testing.T, c *http.Client, url string) echoReply {
	t.Helper()
	code, body := get(t, c, url)
	if code != 200 {
		t.Fatalf("GET %s: status %d: %s", url, code, body)
	}
	var r echoReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("GET %s: %v in %q", url, err, body)
	}
	return r
}

func TestHelloTwoWorkersBothServe(t *testing.T) {
	b := startBerth(t, "../../examples/hello", "--workers", "2")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	re := regexp.MustCompile(`hello from pid (\d+)`)
	pid := func(body string) string {
		if m := re.FindStringSubmatch(body); m != nil {
			return m[1]
		}
		return ""
	}
	// One after the other, requests go to the first worker: it is never
	// busy when the next comes.
	one := map[string]int{}
	for i := 0; i < 20; i++ {
		code, body := get(t, nil, b.URL+"/")
		if code != 200 || pid(body) == "" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
		one[pid(body)]++
	}
	if len(one) != 1 {
		t.Errorf("20 requests one after the other reached %d workers, want 1 (ties go to the first): %v", len(one), one)
	}
	// Requests at once reach both.
	pids := fromWorkers(t, b.URL+"/", 2, pid)
	if len(pids) != 2 {
		t.Fatalf("requests at once reached %d worker pids, want 2: %v", len(pids), pids)
	}
	t.Logf("requests per worker pid: %v", pids)
}

func TestForwardedHeaders(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "1")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	req, _ := http.NewRequest("GET", b.URL+"/x", nil)
	req.Host = "shop.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r echoReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.XFF != "127.0.0.1" || r.XFProto != "http" || r.XFHost != "shop.example" || r.Host != "shop.example" {
		t.Errorf("app saw host=%q X-Forwarded-For=%q -Proto=%q -Host=%q; want shop.example, 127.0.0.1, http, shop.example", r.Host, r.XFF, r.XFProto, r.XFHost)
	}
	if r.RemoteAddress == nil || *r.RemoteAddress != "127.0.0.1" {
		t.Errorf("app saw req.socket.remoteAddress %v, want the client's address 127.0.0.1", r.RemoteAddress)
	}
}

func TestESModuleWithTopLevelAwait(t *testing.T) {
	b := startBerth(t, "testdata/esm", "--workers", "2")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	code, body := get(t, nil, b.URL+"/")
	if code != 200 || !strings.HasPrefix(body, "hello from esm pid ") {
		t.Fatalf("ESM app answered %d %q", code, body)
	}
}

func TestKilledWorkerIsReplaced(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "2")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	victim := getEcho(t, nil, b.URL+"/").Pid
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", victim, err)
	}
	b.WaitFor(fmt.Sprintf(`msg="worker exited".* pid=%d`, victim), 10*time.Second)
	b.WaitForN(`msg="worker ready"`, 3, 20*time.Second)
	seen := fromWorkers(t, b.URL+"/", 2, func(body string) string {
		var r echoReply
		if json.Unmarshal([]byte(body), &r) != nil || r.Pid == 0 {
			return ""
		}
		return strconv.Itoa(r.Pid)
	})
	if seen[strconv.Itoa(victim)] > 0 {
		t.Fatalf("killed worker %d still answers", victim)
	}
	if len(seen) != 2 {
		t.Fatalf("after the replacement, %d workers answer, want 2: %v", len(seen), seen)
	}
}

func TestAppThatNeverListens(t *testing.T) {
	b := startBerth(t, "testdata/never", "--workers", "1", "--spawn-timeout", "2s")
	line := b.WaitFor(`worker failed to start`, 15*time.Second)
	for _, want := range []string{"not ready within the spawn timeout", "listen()", "booting the never-listening app", "still waiting for a database"} {
		if !strings.Contains(b.Output(), want) {
			t.Errorf("spawn-timeout error does not say %q:\n%s", want, line)
		}
	}
	code, body := get(t, nil, b.URL+"/")
	if code != 503 || !strings.Contains(body, "fails to start") {
		t.Errorf("request while the app never listens: %d %q; want 503 saying it fails to start", code, body)
	}
}

func TestCrashLoopBacksOffAndAnswers503(t *testing.T) {
	b := startBerth(t, "testdata/throws", "--workers", "1")
	b.WaitForN(`worker failed to start`, 4, 20*time.Second)
	// The waits between attempts grow: no spinning.
	var waits []time.Duration
	for _, m := range regexp.MustCompile(`worker failed to start.* retry_in=(\S+)`).FindAllStringSubmatch(b.Output(), -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, d)
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] <= waits[i-1] {
			t.Fatalf("retry waits do not grow: %v", waits)
		}
	}
	if !strings.Contains(b.Output(), "boom at start: missing DATABASE_URL") {
		t.Errorf("the error does not quote the app's exception")
	}
	// berth itself stays idle while it waits.
	before := cpuTime(t, b.cmd.Process.Pid)
	start := time.Now()
	code, body := get(t, nil, b.URL+"/")
	if code != 503 || !strings.Contains(body, "fails to start") || strings.Contains(body, "boom at start") {
		t.Errorf("request during a crash loop: %d %q; want 503 saying the app fails to start, without its output", code, body)
	}
	b.WaitForN(`worker failed to start`, 5, 20*time.Second)
	if used, wall := cpuTime(t, b.cmd.Process.Pid)-before, time.Since(start); used > wall/5 {
		t.Errorf("berth used %s of CPU in %s of crash loop", used, wall)
	}
}

// cpuTime is the user+system CPU time of process pid.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func TestGracefulShutdown(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "2", "--shutdown-timeout", "20s")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	addr := strings.TrimPrefix(b.URL, "http://")
	var workerPids []int
	for _, m := range regexp.MustCompile(`msg="worker ready".* pid=(\d+)`).FindAllStringSubmatch(b.Output(), -1) {
		p, _ := strconv.Atoi(m[1])
		workerPids = append(workerPids, p)
	}

	// An idle keep-alive connection: one request answered, then quiet.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	idleR := bufio.NewReader(idle)
	resp, err := http.ReadResponse(idleR, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// A request in flight when the signal comes.
	type result struct {
		code  int
		close bool
		err   error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get(b.URL + "/slow?ms=2000")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		inflight <- result{code: resp.StatusCode, close: resp.Close}
	}()
	b.WaitFor(`slow request started`, 10*time.Second)

	signaled := time.Now()
	b.Signal(syscall.SIGTERM)

	// The idle connection is closed at once.
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("idle keep-alive connection: read gave %v, want EOF (closed by berth)", err)
	} else if d := time.Since(signaled); d > time.Second {
		t.Errorf("idle keep-alive connection closed %s after SIGTERM, want at once", d)
	}

	r := <-inflight
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request: %d, %v; want 200", r.code, r.err)
	}
	if !r.close {
		t.Errorf("in-flight request was answered without Connection: close")
	}
	if code := b.Wait(15 * time.Second); code != 0 {
		t.Errorf("berth exit code %d, want 0", code)
	}
	if d := time.Since(signaled); d > 10*time.Second {
		t.Errorf("berth took %s to stop", d)
	}
	for _, p := range workerPids {
		if alive(p) {
			t.Errorf("worker pid %d outlived berth", p)
		}
	}
}

func TestSIGKILLedBerthLeavesNoWorker(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "2")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	pids := []int{getEcho(t, nil, b.URL+"/").Pid, getEcho(t, nil, b.URL+"/").Pid}
	b.Signal(syscall.SIGKILL)
	b.Wait(5 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for alive(p) && !isZombie(p) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d still runs after berth was killed with SIGKILL", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	return strings.HasPrefix(s[strings.LastIndexByte(s, ')')+1:], " Z")
}

func TestServesInheritedSocket(t *testing.T) {
	addr, f := socketFile(t)
	// Start berth as systemd would: the socket as fd 3, LISTEN_PID its own
	// pid (berth's trampoline sets it before it execs berth serve).
	cmd := exec.Command(berthBin, spawner.TrampolineArg, berthBin, "serve", "testdata/echo", "--workers", "1", "--port", "1")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=http")
	b := startBerthCmd(t, cmd)
	if n := strings.Count(b.Output(), "msg=listening"); n != 1 || !strings.Contains(b.Output(), "inherited=true") || !strings.Contains(b.Output(), "name=http") {
		t.Fatalf("berth did not serve (only) the inherited socket named http:\n%s", b.Output())
	}
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	r := getEcho(t, nil, "http://"+addr+"/")
	// The worker got its own socket, not berth's: LISTEN_FDNAMES=http
	// did not leak into it.
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", r.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), "LISTEN_FDNAMES=http") {
		t.Errorf("worker inherited berth's LISTEN_FDNAMES=http")
	}
}

func TestServesUnixSocket(t *testing.T) {
	sock := t.TempDir() + "/b.sock"
	b := startBerth(t, "testdata/echo", "--workers", "1", "--listen", "unix:"+sock)
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	c := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}}
	if r := getEcho(t, c, "http://berth/"); r.Pid == 0 {
		t.Fatalf("no answer over the Unix socket")
	}
}

func TestScalesBetweenMinAndMaxWorkers(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--min-workers", "1", "--max-workers", "3", "--idle-timeout", "1s")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	// Six slow requests at once keep every worker busy: berth grows to 3.
	done := make(chan error, 6)
	for i := 0; i < 6; i++ {
		go func() {
			resp, err := http.Get(b.URL + "/slow?ms=1500")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			done <- err
		}()
	}
	b.WaitFor(`msg="scaling workers" app=echo from=2 to=3`, 20*time.Second)
	b.WaitForN(`msg="worker ready"`, 3, 20*time.Second)
	for i := 0; i < 6; i++ {
		if err := <-done; err != nil {
			t.Fatalf("request under load: %v", err)
		}
	}
	// Idle again: back down to one, a worker at a time.
	b.WaitFor(`msg="scaling workers" app=echo from=2 to=1`, 20*time.Second)
	if got := getEcho(t, nil, b.URL+"/").Pid; got == 0 {
		t.Fatal("no answer after scaling down")
	}
}

// TestPoisonRequestKillsOneWorker: with 3 workers and warm connection
// pools, a request whose handler exits the process takes down exactly
// one worker, and its 502 says the request was not retried.
func TestPoisonRequestKillsOneWorker(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "3")
	b.WaitForN(`msg="worker ready"`, 3, 30*time.Second)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for try := 1; try <= 3; try++ {
		// Warm every worker's pool: concurrent requests open several
		// connections to each.
		done := make(chan struct{})
		for i := 0; i < 12; i++ {
			go func() {
				defer func() { done <- struct{}{} }()
				get(t, c, b.URL+"/slow?ms=50")
			}()
		}
		for i := 0; i < 12; i++ {
			<-done
		}
		exitsBefore := strings.Count(b.Output(), `msg="worker exited"`)
		code, body := get(t, c, b.URL+"/crash")
		if code != 502 || !strings.Contains(body, "not retried") {
			t.Fatalf("try %d: /crash got %d %q, want 502 saying it was not retried", try, code, body)
		}
		b.WaitForN(`msg="worker exited"`, exitsBefore+1, 10*time.Second)
		b.WaitForN(`msg="worker ready"`, 3+try, 30*time.Second)
		if n := strings.Count(b.Output(), `crashing on purpose`); n != try {
			t.Fatalf("try %d: %d workers ran the poison request, want %d in all", try, n, try)
		}
		if n := strings.Count(b.Output(), `msg="worker exited"`); n != exitsBefore+1 {
			t.Fatalf("try %d: %d workers exited, want 1", try, n-exitsBefore)
		}
	}
}

// TestStartingAppExplains503: a request that waited in vain for a worker
// that has not listened yet gets a 503 saying how long it has run and
// what it waits for, with Retry-After, and none of the app's output.
func TestStartingAppExplains503(t *testing.T) {
	b := startBerth(t, "testdata/never", "--workers", "1", "--spawn-timeout", "60s", "--queue-timeout", "2s")
	b.WaitFor(`booting the never-listening app`, 15*time.Second)
	resp, err := http.Get(b.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if !regexp.MustCompile(`worker w1 has run for \d+s and has not called listen\(\) yet; spawn timeout 1m0s`).Match(body) {
		t.Errorf("503 does not say what the worker waits for: %q", body)
	}
	if strings.Contains(string(body), "database") || strings.Contains(string(body), "booting") {
		t.Errorf("503 shows the app's output to a visitor: %q", body)
	}
}

// socketFile makes a listening TCP socket on loopback as systemd would
// hand it over: its address and its file (closed at the end of the test),
// for a berth started with it as fd 3.
func socketFile(t *testing.T) (string, *os.File) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return l.Addr().String(), f
}
