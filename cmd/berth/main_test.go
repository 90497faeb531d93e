package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// berthBin is the berth binary TestMain builds for end-to-end tests.
var berthBin string

func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			// A fuzzing worker runs only a fuzz target: no berth binary.
			os.Exit(m.Run())
		}
	}
	dir, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	berthBin = filepath.Join(dir, "berth")
	// Runtime dirs of the berths tests start (some killed with SIGKILL) go
	// to a temp dir, not /run/berth.
	os.Setenv("BERTH_RUNTIME_BASE", filepath.Join(dir, "run"))
	build := exec.Command("go", "build", "-o", berthBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build berth: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// berthProc is a running `berth serve` whose output the test can wait on.
type berthProc struct {
	t   *testing.T
	cmd *exec.Cmd
	// URL is http://host:port of berth's first TCP listener ("" if none).
	URL string

	mu      sync.Mutex // protects out, changed
	out     strings.Builder
	changed chan struct{}
	exited  chan struct{}
	err     error // set before exited is closed
}

// engineArgs are added to every startBerth command line:
// TestGoroutineEngine sets them to run other tests on the goroutine
// engine. (The package's tests do not run in parallel.)
var engineArgs []string

var listeningRe = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// startBerth runs `berth serve APP ARGS…` listening on a free loopback
// port (unless args say where to listen) and waits until it listens.
func startBerth(t *testing.T, app string, args ...string) *berthProc {
	t.Helper()
	full := append([]string{"serve", app}, args...)
	full = append(full, engineArgs...)
	if !strings.Contains(strings.Join(args, " "), "--listen") {
		full = append(full, "--listen", "127.0.0.1:0")
	}
	return startBerthCmd(t, exec.Command(berthBin, full...))
}

// startBerthCmd starts cmd (a berth serve command line) and waits until
// berth reports its first listener.
func startBerthCmd(t *testing.T, cmd *exec.Cmd) *berthProc {
	t.Helper()
	testenv.NeedCommand(t, "node")
	b := &berthProc{t: t, cmd: cmd, changed: make(chan struct{}), exited: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start berth: %v", err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			b.mu.Lock()
			b.out.WriteString(sc.Text() + "\n")
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
		}
	}()
	go func() {
		b.err = cmd.Wait()
		pw.Close()
		<-scanned // all output is in b.out before exited closes
		close(b.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			cmd.Process.Signal(syscall.SIGKILL)
			<-b.exited
		}
		if t.Failed() {
			t.Logf("berth output:\n%s", b.Output())
		}
	})
	line := b.WaitFor(`msg=listening`, 10*time.Second)
	if m := listeningRe.FindStringSubmatch(line); m != nil && !strings.HasPrefix(m[1], "/") && !strings.HasPrefix(m[1], "@") {
		b.URL = "http://" + m[1]
	}
	return b
}

// Output is everything berth printed so far.
func (b *berthProc) Output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// WaitFor waits until berth printed a line matching the regular
// expression re, and returns that line. It fails the test at the deadline
// or when berth exits first.
func (b *berthProc) WaitFor(re string, timeout time.Duration) string {
	b.t.Helper()
	return b.WaitForN(re, 1, timeout)
}

// WaitForN waits until n lines match re and returns the last.
func (b *berthProc) WaitForN(re string, n int, timeout time.Duration) string {
	b.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	exited := false
	for {
		b.mu.Lock()
		var matches []string
		for _, l := range strings.Split(b.out.String(), "\n") {
			if rx.MatchString(l) {
				matches = append(matches, l)
			}
		}
		changed := b.changed
		b.mu.Unlock()
		if len(matches) >= n {
			return matches[n-1]
		}
		if exited {
			b.t.Fatalf("berth exited (%v) before printing %d lines matching %q", b.err, n, re)
		}
		select {
		case <-changed:
		case <-b.exited:
			exited = true // look once more at the complete output
		case <-deadline.C:
			b.t.Fatalf("berth did not print %d lines matching %q within %s", n, re, timeout)
		}
	}
}

// Signal sends sig to berth.
func (b *berthProc) Signal(sig os.Signal) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil {
		b.t.Fatalf("signal berth: %v", err)
	}
}

// Wait waits for berth to exit and returns its exit code.
func (b *berthProc) Wait(timeout time.Duration) int {
	b.t.Helper()
	select {
	case <-b.exited:
	case <-time.After(timeout):
		b.t.Fatalf("berth did not exit within %s", timeout)
	}
	if b.err == nil {
		return 0
	}
	if ee, ok := b.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	b.t.Fatalf("berth: %v", b.err)
	return -1
}

// get does a GET on berth and returns status and body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// atOnce does n GETs of url released at the same moment, so that they are
// in flight together, and returns the bodies. Requests one after the other
// all go to the first worker (ties go to the first), so this is how a test
// reaches more than one. An error or a status other than 200 fails t.
func atOnce(t *testing.T, url string, n int) []string {
	t.Helper()
	type result struct {
		code int
		body string
		err  error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Get(url)
			if err != nil {
				results[i].err = err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			results[i] = result{resp.StatusCode, string(body), err}
		}()
	}
	close(start)
	wg.Wait()
	bodies := make([]string, n)
	for i, r := range results {
		if r.err != nil || r.code != 200 {
			t.Fatalf("GET %s (%d at once): %d %q %v", url, n, r.code, r.body, r.err)
		}
		bodies[i] = r.body
	}
	return bodies
}

// fromWorkers sends bursts of requests at once to url (at most ten bursts
// of eight) until want different workers answered, and returns how many
// answers each gave; worker names the worker from a body, or returns ""
// for an answer the test does not expect, which fails t.
func fromWorkers(t *testing.T, url string, want int, worker func(body string) string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < 10 && len(seen) < want; i++ {
		for _, body := range atOnce(t, url, 8) {
			w := worker(body)
			if w == "" {
				t.Fatalf("GET %s: unexpected answer %q", url, body)
			}
			seen[w]++
		}
	}
	return seen
}

// alive reports whether a process with pid exists.
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
