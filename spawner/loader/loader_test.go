package loader

import (
	"bufio"
	"bytes"
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// startTimeout bounds how long a test waits for a worker to report READY=1.
const startTimeout = 15 * time.Second

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// worker is a node process started the way berth starts one.
type worker struct {
	cmd    *exec.Cmd
	sock   string // the worker socket (fd 3) path
	ready  chan error
	exited chan struct{} // closed when the process has exited; then waitErr is set
	output *syncBuffer   // stdout and stderr
	// waitErr is the process's exit status, valid after exited is closed.
	waitErr error
}

type workerConfig struct {
	app string   // startup file, relative to testdata/
	env []string // extra environment
	// noListenFDs starts node with the loader but without the worker
	// contract (no fd 3, no LISTEN_*).
	noListenFDs bool
}

// writeLoader writes the embedded loader to a fresh directory.
func writeLoader(t *testing.T) string {
	t.Helper()
	path, err := WriteTo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// shortTempDir returns a temporary directory with a path short enough for
// Unix sockets (t.TempDir() paths with long test names are not).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startWorker(t *testing.T, cfg workerConfig) *worker {
	t.Helper()
	nodePath := testenv.NeedCommand(t, "node")
	loaderPath := writeLoader(t)
	dir := shortTempDir(t)
	app, err := filepath.Abs(filepath.Join("testdata", cfg.app))
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{
		sock:   filepath.Join(dir, "w.sock"),
		ready:  make(chan error, 1),
		exited: make(chan struct{}),
		output: &syncBuffer{},
	}
	// LISTEN_PID must be node's own pid: sh learns its pid and execs node,
	// as berth's exec trampoline does.
	w.cmd = exec.Command("sh", "-c", `LISTEN_PID=$$ exec "$0" --require "$1" "$2"`, nodePath, loaderPath, app)
	if cfg.noListenFDs {
		w.cmd = exec.Command(nodePath, "--require", loaderPath, app)
	}
	w.cmd.Dir = filepath.Dir(app)
	w.cmd.Stdout = w.output
	w.cmd.Stderr = w.output
	w.cmd.Env = append(os.Environ(), cfg.env...)
	w.cmd.Env = append(w.cmd.Env, "APP_PATH="+filepath.Join(dir, "app.sock"))

	if cfg.noListenFDs {
		close(w.ready)
	} else {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: w.sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		lnFile, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // lnFile keeps the socket; the worker gets it as fd 3
		readyPath := filepath.Join(dir, "r.sock")
		readyLn, err := net.ListenUnix("unix", &net.UnixAddr{Name: readyPath, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { readyLn.Close() })
		w.cmd.ExtraFiles = []*os.File{lnFile}
		w.cmd.Env = append(w.cmd.Env, "LISTEN_FDS=1", "LISTEN_FDNAMES=berth", "BERTH_READY_SOCKET="+readyPath, "NOTIFY_SOCKET="+filepath.Join(dir, "n.sock"))
		go func() { w.ready <- acceptReady(readyLn) }()
		defer lnFile.Close() // after Start, only the worker holds the socket
	}

	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.waitErr = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.exited
		if t.Failed() {
			t.Logf("worker output:\n%s", w.output.String())
		}
	})
	return w
}

// acceptReady accepts one connection on ln and reads the readiness line.
func acceptReady(ln *net.UnixListener) error {
	ln.SetDeadline(time.Now().Add(startTimeout))
	conn, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept on ready socket: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(startTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read ready socket: %w", err)
	}
	if line != "READY=1\n" {
		return fmt.Errorf("ready socket got %q, want %q", line, "READY=1\n")
	}
	return nil
}

// waitReady waits for READY=1, failing the test if the worker exits first.
func (w *worker) waitReady(t *testing.T) {
	t.Helper()
	select {
	case err := <-w.ready:
		if err != nil {
			t.Fatalf("worker not ready: %v", err)
		}
	case <-w.exited:
		t.Fatalf("worker exited before it was ready: %v", w.waitErr)
	}
}

// waitExit waits for the worker to exit within d and returns its status.
func (w *worker) waitExit(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-w.exited:
		return w.waitErr
	case <-time.After(d):
		t.Fatalf("worker still running after %v", d)
		return nil
	}
}

// unixClient is an HTTP client that reaches every host over the Unix
// socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}

// get requests path over the Unix socket sock and returns the body.
func get(t *testing.T, sock, path string) string {
	t.Helper()
	c := unixClient(sock)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://worker" + path)
	if err != nil {
		t.Fatalf("GET %s over %s: %v", path, sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %q", path, resp.StatusCode, body)
	}
	return string(body)
}

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

func TestListenForms(t *testing.T) {
	for _, form := range []string{"port", "port-host-backlog-cb", "options", "path", "none", "no-callback"} {
		t.Run(form, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: "unit/forms.js", env: []string{"FORM=" + form}})
			w.waitReady(t)
			var got struct {
				Callback, Listening, MainModule bool
				AddressType                     string
			}
			decode(t, get(t, w.sock, "/"), &got)
			if !got.Callback || !got.Listening {
				t.Errorf("listen callback fired: %v, 'listening' fired: %v; want both", got.Callback, got.Listening)
			}
			if got.AddressType != "string" {
				t.Errorf("server.address() is a %s, want string (the socket path)", got.AddressType)
			}
			if !got.MainModule {
				t.Errorf("require.main === module is false for the CommonJS entry")
			}
			if out := w.output.String(); !strings.Contains(out, "Listening on pipe "+w.sock) {
				t.Errorf("app logged %q, want it to log its address as the worker socket %s", out, w.sock)
			}
		})
	}
}

func TestWithoutListenFDsLoaderDoesNothing(t *testing.T) {
	w := startWorker(t, workerConfig{app: "unit/forms.js", env: []string{"FORM=path"}, noListenFDs: true})
	appSock := ""
	for _, kv := range w.cmd.Env {
		if v, ok := strings.CutPrefix(kv, "APP_PATH="); ok {
			appSock = v
		}
	}
	// The app binds its own path; wait for it to appear by polling the
	// connection, bounded by a deadline.
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.Dial("unix", appSock)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case <-w.exited:
			t.Fatalf("app exited: %v", w.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("app never listened on %s: %v", appSock, err)
		}
	}
	var got struct{ Callback bool }
	decode(t, get(t, appSock, "/"), &got)
	if !got.Callback {
		t.Errorf("listen callback did not fire")
	}
	if strings.Contains(w.output.String(), "berth loader") {
		t.Errorf("loader wrote notes without LISTEN_FDS: %q", w.output.String())
	}
}

func TestLoaderDoesNotLeakIntoChildren(t *testing.T) {
	w := startWorker(t, workerConfig{app: "unit/leak.js"})
	w.waitReady(t)
	type probe struct {
		Env             []string
		ExecArgv        []string
		BerthGlobal     bool
		PassengerGlobal bool
	}
	var got struct{ Self, Spawned, Forked probe }
	decode(t, get(t, w.sock, "/"), &got)
	if len(got.Self.Env) != 0 {
		t.Errorf("app still sees %v in process.env", got.Self.Env)
	}
	if !got.Self.BerthGlobal || !got.Self.PassengerGlobal {
		t.Errorf("app sees globals berth: %v, PhusionPassenger: %v; want both", got.Self.BerthGlobal, got.Self.PassengerGlobal)
	}
	for name, p := range map[string]probe{"spawned": got.Spawned, "forked": got.Forked} {
		if len(p.Env) != 0 || p.BerthGlobal || p.PassengerGlobal {
			t.Errorf("%s child sees env %v, berth global %v, PhusionPassenger global %v; want none", name, p.Env, p.BerthGlobal, p.PassengerGlobal)
		}
		for _, a := range p.ExecArgv {
			if strings.Contains(a, FileName) {
				t.Errorf("%s child runs with the loader: execArgv %v", name, p.ExecArgv)
			}
		}
	}
}

// errRefused reports whether err is a refused connection.
func errRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
