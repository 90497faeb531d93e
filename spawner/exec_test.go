package spawner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain makes the test binary double as berth's trampoline and as a
// worker, so the exec back end is tested with real processes and fds.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == TrampolineArg {
		fmt.Fprintln(os.Stderr, RunTrampoline(os.Args[2:]))
		os.Exit(127)
	}
	switch os.Getenv("SPAWNER_TEST_WORKER") {
	case "serve":
		testWorker()
		return
	case "silent":
		fmt.Println("warming up the flux capacitor")
		select {}
	case "crash":
		fmt.Println("fatal: no config")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// testWorker is a worker that follows the contract: socket on fd 3 when
// LISTEN_PID is its pid, READY=1 on BERTH_READY_SOCKET.
func testWorker() {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		fmt.Println("LISTEN_PID", os.Getenv("LISTEN_PID"), "is not my pid", os.Getpid())
		os.Exit(1)
	}
	l, err := net.FileListener(os.NewFile(3, "sock"))
	if err != nil {
		fmt.Println("fd 3:", err)
		os.Exit(1)
	}
	c, err := net.Dial("unix", os.Getenv("BERTH_READY_SOCKET"))
	if err != nil {
		fmt.Println("ready socket:", err)
		os.Exit(1)
	}
	c.Write([]byte("READY=1\n"))
	// As the Node loader does: heartbeats, and out-of-band work on demand.
	go func() {
		for range time.Tick(50 * time.Millisecond) {
			c.Write([]byte("WATCHDOG=1\n"))
		}
	}()
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if sc.Text() == "OOB=1" {
				c.Write([]byte("OOB_DONE=1\n"))
			}
		}
	}()
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid %d", os.Getpid())
	}))
}

func newTestExec(t *testing.T, out io.Writer) *Exec {
	t.Helper()
	dir, err := os.MkdirTemp("", "sp") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e, err := NewExec(ExecConfig{RuntimeDir: dir, Trampoline: []string{os.Args[0], TrampolineArg}, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func spec(mode string) Spec {
	return Spec{App: "t", Name: "w1", Argv: []string{os.Args[0]}, Env: []string{"SPAWNER_TEST_WORKER=" + mode}, StopTimeout: 2 * time.Second}
}

func TestExecStartsAWorkerOnItsSocket(t *testing.T) {
	var out strings.Builder
	e := newTestExec(t, &out)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp := spec("serve")
	var startedPid int
	sp.Started = func(pid int, output func() []string) { startedPid = pid }
	w, err := e.Start(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if startedPid != w.Pid() {
		t.Errorf("Started got pid %d, the worker is %d", startedPid, w.Pid())
	}
	if u, err := w.Usage(ctx); err != nil || u.Memory < 1<<20 {
		t.Errorf("usage %+v, %v: want the worker's resident memory", u, err)
	}
	live := w.(Liveness)
	for live.LastHeartbeat().IsZero() {
		select {
		case <-ctx.Done():
			t.Fatal("no heartbeat recorded")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if Blocked(w, time.Now(), time.Second) || !Blocked(w, time.Now().Add(2*time.Second), time.Second) {
		t.Error("Blocked does not follow the heartbeats")
	}
	if err := live.OutOfBand(ctx); err != nil {
		t.Errorf("out-of-band work: %v", err)
	}
	network, addr := w.Addr()
	fi, err := os.Stat(addr)
	if err != nil || fi.Mode().Perm() != 0o600 || network != "unix" {
		t.Fatalf("worker socket %s %s: %v %v", network, addr, fi.Mode(), err)
	}
	c := http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial(network, addr) }}}
	resp, err := c.Get("http://w/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != fmt.Sprintf("pid %d", w.Pid()) {
		t.Fatalf("got %q from worker pid %d", body, w.Pid())
	}
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-w.Done()
	if _, err := os.Stat(addr); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s left behind: %v", addr, err)
	}
}

func TestExecSpawnTimeoutQuotesOutput(t *testing.T) {
	e := newTestExec(t, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // time to print, on a busy machine
	defer cancel()
	_, err := e.Start(ctx, spec("silent"))
	if !errors.Is(err, ErrSpawnTimeout) || !strings.Contains(err.Error(), "warming up the flux capacitor") || !strings.Contains(err.Error(), "worker w1 of t") {
		t.Fatalf("err = %v", err)
	}
}

func TestExecExitBeforeReady(t *testing.T) {
	var out strings.Builder
	e := newTestExec(t, &out)
	_, err := e.Start(context.Background(), spec("crash"))
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "fatal: no config") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "[t w1] fatal: no config") {
		t.Errorf("output not tagged with the worker: %q", out.String())
	}
}

func TestExecStopKillsAWorkerThatIgnoresSIGTERM(t *testing.T) {
	e := newTestExec(t, io.Discard)
	sp := spec("serve")
	sp.StopTimeout = 200 * time.Millisecond
	w, err := e.Start(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	// Make the worker ignore SIGTERM: stop it, then SIGCONT is never sent.
	syscall.Kill(w.Pid(), syscall.SIGSTOP)
	start := time.Now()
	if err := w.Stop(context.Background()); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %s", d)
	}
}
