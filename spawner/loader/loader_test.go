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

// syncBuffer collects a process's output while a test reads and waits on
// it.
type syncBuffer struct {
	mu      sync.Mutex // protects b, changed
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every Write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitOutput waits until the worker printed want, failing the test when it
// exits first or after d.
func (w *worker) waitOutput(t *testing.T, want string, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		w.output.mu.Lock()
		found := strings.Contains(w.output.b.String(), want)
		changed := w.output.changed
		w.output.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-w.exited:
			if !strings.Contains(w.output.String(), want) {
				t.Fatalf("worker exited (%v) without printing %q", w.waitErr, want)
			}
			return
		case <-deadline.C:
			t.Fatalf("worker did not print %q within %v", want, d)
		}
	}
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
	// berth is berth's end of the readiness connection when the worker was
	// started with keepReady, valid after ready has delivered nil.
	berth *berthEnd
}

type workerConfig struct {
	app string   // startup file, relative to testdata/
	env []string // extra environment
	// noListenFDs starts node with the loader but without the worker
	// contract (no fd 3, no LISTEN_*).
	noListenFDs bool
	// loaderViaSymlink passes the loader to node by a path through a
	// symlinked directory.
	loaderViaSymlink bool
	// keepReady keeps the readiness connection open after READY=1, as
	// worker.berth; otherwise the test closes it at once.
	keepReady bool
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
	if cfg.loaderViaSymlink {
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(filepath.Dir(loaderPath), link); err != nil {
			t.Fatal(err)
		}
		loaderPath = filepath.Join(link, FileName)
	}
	dir := shortTempDir(t)
	app, err := filepath.Abs(filepath.Join("testdata", cfg.app))
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{
		sock:   filepath.Join(dir, "w.sock"),
		ready:  make(chan error, 1),
		exited: make(chan struct{}),
		output: newSyncBuffer(),
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
		go func() {
			conn, r, err := acceptReady(readyLn)
			if err == nil {
				if cfg.keepReady {
					conn.SetDeadline(time.Time{})
					w.berth = newBerthEnd(conn, r)
				} else {
					conn.Close()
				}
			}
			w.ready <- err
		}()
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
		if w.berth != nil {
			w.berth.close()
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", w.output.String())
		}
	})
	return w
}

// acceptReady accepts one connection on ln and reads the readiness line.
func acceptReady(ln *net.UnixListener) (*net.UnixConn, *bufio.Reader, error) {
	ln.SetDeadline(time.Now().Add(startTimeout))
	conn, err := ln.AcceptUnix()
	if err != nil {
		return nil, nil, fmt.Errorf("accept on ready socket: %w", err)
	}
	conn.SetDeadline(time.Now().Add(startTimeout))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read ready socket: %w", err)
	}
	if line != "READY=1\n" {
		conn.Close()
		return nil, nil, fmt.Errorf("ready socket got %q, want %q", line, "READY=1\n")
	}
	return conn, r, nil
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
			// The app logs its address as the worker socket's path.
			w.waitOutput(t, "Listening on pipe "+w.sock, startTimeout)
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
	w.waitOutput(t, "Listening on pipe "+appSock, startTimeout)
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
	for _, viaSymlink := range []bool{false, true} {
		t.Run(fmt.Sprintf("loader via symlink %v", viaSymlink), func(t *testing.T) {
			testLoaderDoesNotLeak(t, viaSymlink)
		})
	}
}

func testLoaderDoesNotLeak(t *testing.T, viaSymlink bool) {
	w := startWorker(t, workerConfig{app: "unit/leak.js", loaderViaSymlink: viaSymlink})
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

// waitRefused waits until connecting to the Unix socket sock is refused,
// failing the test after d.
func waitRefused(t *testing.T, sock string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := net.Dial("unix", sock)
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s still not refused after %v: %v", sock, d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLaterServersListenAsAsked(t *testing.T) {
	// A port held by someone else, as a sibling worker holds it.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port

	w := startWorker(t, workerConfig{app: "unit/two-servers.js", env: []string{fmt.Sprintf("TAKEN_PORT=%d", port)}})
	w.waitReady(t)
	var got struct {
		Second       int
		HandledError string
	}
	decode(t, get(t, w.sock, "/"), &got)
	if got.Second == 0 {
		t.Fatalf("second server did not report its port")
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", got.Second))
	if err != nil {
		t.Fatalf("second server on its own port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "second" {
		t.Errorf("second server answered %q, want %q", body, "second")
	}
	if got.HandledError != "EADDRINUSE" {
		t.Errorf("app's own 'error' handler got %q, want EADDRINUSE", got.HandledError)
	}
	w.waitOutput(t, "the worker keeps running without it", startTimeout)
	// Only the server without an 'error' handler is reported failed.
	var failed []string
	for _, line := range strings.Split(w.output.String(), "\n") {
		if strings.Contains(line, "the worker keeps running without it") {
			failed = append(failed, line)
		}
	}
	if len(failed) != 1 || !strings.HasPrefix(failed[0], fmt.Sprintf(`berth loader: listen(%d, "127.0.0.1") at `, port)) {
		t.Errorf("failure notes %q, want one, for listen(%d, \"127.0.0.1\")", failed, port)
	}
	if !strings.Contains(w.output.String(), `listen(0, "127.0.0.1") at `) {
		t.Errorf("no note for the second server:\n%s", w.output.String())
	}
	// Still serving after the failed listen.
	decode(t, get(t, w.sock, "/"), &got)
}

func TestExplicitSelection(t *testing.T) {
	tests := []struct {
		api, form, name string
	}{
		{api: "passenger", form: "name", name: "passenger"},
		{api: "passenger", form: "name", name: "/passenger"},
		{api: "passenger", form: "path", name: "passenger"},
		{api: "passenger", form: "port", name: "passenger"},
		{api: "berth", form: "name", name: "berth"},
		{api: "berth", form: "name", name: "/berth"},
		{api: "berth", form: "path", name: "berth"},
		{api: "berth", form: "port", name: "berth"},
	}
	for _, tt := range tests {
		t.Run(tt.api+"/"+tt.form+"/"+tt.name, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: "unit/explicit.js", env: []string{"API=" + tt.api, "FORM=" + tt.form, "NAME=" + tt.name}})
			w.waitReady(t)
			var got struct {
				Served    bool
				OtherPort int
			}
			decode(t, get(t, w.sock, "/"), &got)
			if !got.Served {
				t.Fatalf("worker socket not served by the selected server")
			}
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", got.OtherPort))
			if err != nil {
				t.Fatalf("other server on its own port: %v", err)
			}
			resp.Body.Close()
			// The listen callback of the selected server ran.
			w.waitOutput(t, "served server listening", startTimeout)
		})
	}
}

func TestExplicitSelectionErrors(t *testing.T) {
	tests := []struct {
		app  string
		want []string
	}{
		{app: "unit/explicit-twice.js", want: []string{"two servers selected explicitly", "explicit-twice.js:5", "explicit-twice.js:6"}},
		{app: "unit/explicit-late.js", want: []string{"auto-install already gave the worker socket", "explicit-late.js:4", "explicit-late.js:5"}},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: tt.app})
			err := w.waitExit(t, startTimeout)
			if err == nil {
				t.Errorf("worker exited successfully, want an error")
			}
			out := w.output.String()
			for _, s := range tt.want {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestModuleSystems(t *testing.T) {
	tests := []struct {
		name, app, want string
	}{
		{name: "mjs with top-level await", app: "esm-mjs/app.mjs", want: "hello from app.mjs"},
		{name: "type module", app: "esm-type/app.js", want: "hello from a type:module app"},
		{name: "extension-less bin/www", app: "www/bin/www", want: "hello from bin/www"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: tt.app})
			w.waitReady(t)
			if got := get(t, w.sock, "/"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("bin/www sees itself as main module", func(t *testing.T) {
		w := startWorker(t, workerConfig{app: "www/bin/www"})
		w.waitReady(t)
		w.waitOutput(t, "main module: ", startTimeout)
		if out := w.output.String(); !strings.Contains(out, "main module: true") {
			t.Errorf("bin/www output %q, want require.main === module", out)
		}
	})
}

func TestTLSServerServedInPlainHTTP(t *testing.T) {
	certPath, keyPath := testenv.WriteCert(t, t.TempDir())
	for _, kind := range []string{"https", "http2"} {
		t.Run(kind, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: "unit/https.js", env: []string{"KIND=" + kind, "TLS_CERT=" + certPath, "TLS_KEY=" + keyPath}})
			w.waitReady(t)
			var got struct {
				Kind      string
				Encrypted bool
			}
			decode(t, get(t, w.sock, "/"), &got)
			if got.Kind != kind || got.Encrypted {
				t.Errorf("got kind %q encrypted %v, want %q over plain HTTP", got.Kind, got.Encrypted, kind)
			}
		})
	}
}

func TestShutdownOnSIGTERM(t *testing.T) {
	tests := []struct {
		name       string
		appSIGTERM string // drain.js's APP_SIGTERM
	}{
		{name: "app without SIGTERM handler"},
		{name: "app with SIGTERM handler", appSIGTERM: "log"},
		{name: "app whose SIGTERM handler keeps it alive", appSIGTERM: "linger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: "unit/drain.js", env: []string{"APP_SIGTERM=" + tt.appSIGTERM}})
			w.waitReady(t)

			// An idle keep-alive connection.
			idle, err := net.Dial("unix", w.sock)
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			idleReader := bufio.NewReader(idle)
			fmt.Fprint(idle, "GET / HTTP/1.1\r\nHost: worker\r\n\r\n")
			resp, err := http.ReadResponse(idleReader, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()

			// A request in flight on a keep-alive connection: the first
			// part has arrived.
			busy, err := net.Dial("unix", w.sock)
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			busyReader := bufio.NewReader(busy)
			fmt.Fprint(busy, "GET /slow HTTP/1.1\r\nHost: worker\r\n\r\n")
			slow, err := http.ReadResponse(busyReader, nil)
			if err != nil {
				t.Fatal(err)
			}
			slowBody := bufio.NewReader(slow.Body)
			if line, err := slowBody.ReadString('\n'); err != nil || line != "first part\n" {
				t.Fatalf("slow response started with %q, %v", line, err)
			}

			if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}

			// The idle connection is closed at once: the loader is draining.
			idle.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := idleReader.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("idle keep-alive connection: read %d bytes, %v; want EOF", n, err)
			}
			// The listening socket closes in the same event-loop turn as the
			// idle connection, but the kernel may let a connect in just
			// before; wait (bounded) for refusal.
			waitRefused(t, w.sock, 5*time.Second)

			// A request that arrives on the busy connection now is answered
			// with "Connection: close", after the in-flight one completes.
			fmt.Fprint(busy, "GET / HTTP/1.1\r\nHost: worker\r\n\r\n")
			busy.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, err := io.ReadAll(slowBody)
			if err != nil || string(rest) != "second part\n" {
				t.Errorf("in-flight response ended with %q, %v; want %q", rest, err, "second part\n")
			}
			slow.Body.Close()
			late, err := http.ReadResponse(busyReader, nil)
			if err != nil {
				t.Fatalf("request sent during shutdown: %v", err)
			}
			io.ReadAll(late.Body)
			late.Body.Close()
			if !late.Close {
				t.Errorf("response during shutdown has Connection %q, want close", late.Header.Get("Connection"))
			}
			if n, err := busyReader.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("busy connection after its last response: read %d bytes, %v; want EOF", n, err)
			}

			if err := w.waitExit(t, 10*time.Second); err != nil {
				t.Errorf("worker exit: %v, want status 0", err)
			}
			if ran := strings.Contains(w.output.String(), "app SIGTERM handler ran"); ran != (tt.appSIGTERM != "") {
				t.Errorf("app's SIGTERM handler ran: %v, want %v", ran, tt.appSIGTERM != "")
			}
		})
	}
}

func TestRemoteAddressFromForwardedFor(t *testing.T) {
	w := startWorker(t, workerConfig{app: "unit/peer.js"})
	w.waitReady(t)
	c := unixClient(w.sock)
	defer c.CloseIdleConnections()
	tests := []struct {
		xff        string // "" sends no header
		wantAddr   *string
		wantFamily *string
	}{
		{xff: "198.51.100.7", wantAddr: ptr("198.51.100.7"), wantFamily: ptr("IPv4")},
		{xff: "203.0.113.9, 198.51.100.8", wantAddr: ptr("198.51.100.8"), wantFamily: ptr("IPv4")},
		{xff: "2001:db8::1", wantAddr: ptr("2001:db8::1"), wantFamily: ptr("IPv6")},
		{xff: "not an address"},
		{xff: ""},
		{xff: "unix"}, // what berth appends for a client on a Unix socket
		// The same client again after others, and twice in a row (the
		// loader caches the parsed header per connection).
		{xff: "198.51.100.7", wantAddr: ptr("198.51.100.7"), wantFamily: ptr("IPv4")},
		{xff: "198.51.100.7", wantAddr: ptr("198.51.100.7"), wantFamily: ptr("IPv4")},
		{xff: "2001:db8::1", wantAddr: ptr("2001:db8::1"), wantFamily: ptr("IPv6")},
	}
	// One connection carries all requests, as berth reuses connections:
	// each request gets its own client's address.
	for _, tt := range tests {
		t.Run(tt.xff, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://worker/", nil)
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				RemoteAddress *string
				RemoteFamily  *string
			}
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if str(got.RemoteAddress) != str(tt.wantAddr) || str(got.RemoteFamily) != str(tt.wantFamily) {
				t.Errorf("remoteAddress %s, remoteFamily %s; want %s, %s", str(got.RemoteAddress), str(got.RemoteFamily), str(tt.wantAddr), str(tt.wantFamily))
			}
		})
	}
}

func ptr(s string) *string { return &s }

func str(p *string) string {
	if p == nil {
		return "undefined"
	}
	return *p
}

func TestRemoteAddressOfUpgradeRequest(t *testing.T) {
	w := startWorker(t, workerConfig{app: "unit/peer.js"})
	w.waitReady(t)
	conn, err := net.Dial("unix", w.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: worker\r\nConnection: Upgrade\r\nUpgrade: test\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ RemoteAddress, RemoteFamily *string }
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if str(got.RemoteAddress) != "198.51.100.9" || str(got.RemoteFamily) != "IPv4" {
		t.Errorf("upgrade request: remoteAddress %s, remoteFamily %s; want 198.51.100.9, IPv4", str(got.RemoteAddress), str(got.RemoteFamily))
	}
}
