package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// TestStackTraceOneRecord: standalone, a stack trace the app writes at
// once is one record on berth's stderr: one line with the time, the app,
// the worker and the stream, its other lines marked as continuations.
func TestStackTraceOneRecord(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "1", "--name", "trace")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	getEcho(t, nil, b.URL+"/trace")
	b.WaitFor(`trace w1 stdout: after the trace$`, 10*time.Second)

	out := b.Output()
	head := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) trace w1 stderr: Error: boom in handler\n((?:  \|     at .*\n)+)`)
	m := head.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stack trace record (time, app, worker, stream, then '  |     at' lines) in:\n%s", out)
	}
	if n := strings.Count(m[2], "\n"); n < 2 {
		t.Errorf("the record has %d continuation lines, want the whole trace:\n%s", n, m[0])
	}
	if regexp.MustCompile(`(?m)^\S+ trace w1 stderr:\s+at `).MatchString(out) {
		t.Errorf("a line of the trace is a record of its own:\n%s", out)
	}
	// The serving line, and no attribute twice.
	if !regexp.MustCompile(`msg="serving trace on http://127\.0\.0\.1:\d+ with 1 worker \(ready in \d+\.\d s\)"`).MatchString(out) {
		t.Errorf("no serving line in:\n%s", out)
	}
}

// TestNoDuplicateAttributes: at debug level, the spawner's lines that name
// the app do not repeat berth's app attribute.
func TestNoDuplicateAttributes(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "1", "--name", "dups", "--log-level", "debug")
	line := b.WaitFor(`msg="worker started"`, 20*time.Second)
	if n := strings.Count(line, "app=dups"); n != 1 {
		t.Errorf("app=dups %d times in %q", n, line)
	}
}

// waitFile waits until the file at path contains re (berth writes it from
// another process: polled, with a deadline).
func waitFile(t *testing.T, path, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(path)
		if rx.Match(b) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no match for %q within %s:\n%s", path, re, timeout, b)
		}
		<-tick.C
	}
}

// TestLogFileReopenedOnSIGUSR1: --log-file writes berth's log and the
// workers' output to the file; after logrotate moves it, SIGUSR1 makes
// berth write to a new file of that name. berth logs says where the logs
// of a berth without systemd go.
func TestLogFileReopenedOnSIGUSR1(t *testing.T) {
	testenv.NeedCommand(t, "node")
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	dir := t.TempDir()
	logPath := filepath.Join(dir, "shop.log")
	cmd := exec.Command(berthBin, "serve", "testdata/echo", "--name", "shop", "--workers", "1", "--listen", "127.0.0.1:0", "--log-file", logPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Errorf("berth wrote to stderr despite --log-file: %s", stderr.String())
		}
	})
	text := waitFile(t, logPath, `msg="serving shop on (http://127\.0\.0\.1:\d+)`, 20*time.Second)
	url := regexp.MustCompile(`serving shop on (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(text)[1]
	if !strings.Contains(text, "shop w1 stdout: echo app listening") {
		t.Errorf("the worker's output is not in the log file:\n%s", text)
	}

	// berth logs: this berth runs without systemd; it says where its logs are.
	out, err := exec.Command(berthBin, "logs", "shop").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "shop runs without systemd, so it has no journal") || !strings.Contains(string(out), "logs to "+logPath) {
		t.Errorf("berth logs shop: exit %d:\n%s", code, out)
	}

	// logrotate: move, then SIGUSR1.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	waitUntil(t, 10*time.Second, "a new log file after SIGUSR1", func() bool {
		_, err := os.Stat(logPath)
		return err == nil
	})
	getEcho(t, nil, url+"/trace")
	waitFile(t, logPath, `shop w1 stderr: Error: boom in handler\n  \|     at `, 10*time.Second)
	if b, _ := os.ReadFile(logPath + ".1"); strings.Contains(string(b), "boom in handler") {
		t.Error("berth still writes to the rotated file")
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestLogsWithoutJournal: on a machine without a journal, berth logs says
// where standalone logs go instead of running journalctl.
func TestLogsWithoutJournal(t *testing.T) {
	ran := false
	env := logsEnv{
		command:    func([]string) (*exec.Cmd, error) { ran = true; return exec.Command("true"), nil },
		journal:    func() bool { return false },
		standalone: func(string) (string, bool) { return "", false },
	}
	var out, errOut bytes.Buffer
	if code := env.run([]string{"shop"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no systemd journal") || !strings.Contains(errOut.String(), "--log-file") {
		t.Errorf("exit %d: %q", code, errOut.String())
	}
	if ran {
		t.Error("journalctl ran")
	}
}
