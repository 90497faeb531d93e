package main

// peers.go: the systems under test, each started fresh for every run on
// loopback, and stopped (with every process it made) afterwards.

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

//go:embed testdata
var testdata embed.FS

// appProcs is the number of app processes of every peer that has several.
const appProcs = 2

// peer is one system under test.
type peer struct {
	name  string
	about string // how it is set up, for the report
	front bool   // it has a front-end process (a proxy, or the cluster primary)
	// tool names the program it needs beyond node ("" for none); the peer is
	// skipped when the program cannot be found or installed.
	tool string
	// start launches the peer's processes in in.dir; waitReady follows.
	start func(ctx context.Context, h *harness, in *instance) error
}

func allPeers() []*peer {
	return []*peer{
		{
			name:  "direct",
			about: "one `node app.js` process listening on 127.0.0.1, no proxy",
			start: startDirect,
		},
		{
			name:  "cluster",
			about: "Node's `cluster` module, 2 workers, default (round-robin) scheduling, no proxy; the primary is the front end",
			front: true,
			start: startCluster,
		},
		{
			name: "nginx",
			about: "nginx, `worker_processes auto` (one per core, like berth's GOMAXPROCS), `access_log off`, " +
				"in front of 2 `node` processes on Unix sockets; upstream `keepalive 64`, `proxy_http_version 1.1`, " +
				"`Connection \"\"`, `keepalive_requests 100000` on both sides; `Host`/`X-Forwarded-For`/`X-Forwarded-Proto` " +
				"set as a deployment would (berth sends them too); `/cached` and `/cached/N` through `proxy_cache`; `/static/` from `public/`",
			front: true,
			tool:  "nginx",
			start: startNginx,
		},
		berthPeer("berth", "`bin/berth serve APP --workers 2 --listen 127.0.0.1:PORT --spawner exec --engine loop` (standalone; the event loops, berth's default engine)",
			func(h *harness) string { return h.berth }, "--engine", "loop"),
		berthPeer("berth-goroutine", "berth as above, with `--engine goroutine` (a goroutine per connection)",
			func(h *harness) string { return h.berth }, "--engine", "goroutine"),
		berthPeer("base", "berth as above, built from the -base binary (an earlier build, for a before/after in the same rounds)",
			func(h *harness) string { return h.base }, "--engine", "loop"),
		berthPeer("base-goroutine", "the -base binary with `--engine goroutine`",
			func(h *harness) string { return h.base }, "--engine", "goroutine"),
		{
			name:  "passenger",
			about: "`passenger start --engine builtin --max-pool-size 2 --min-instances 2` (Debian's Passenger; turbocache on, its default)",
			front: true,
			tool:  "passenger",
			start: startPassenger,
		},
	}
}

// berthPeer is a berth started from the binary bin picks (the one under
// test or the -base one) with extra arguments.
func berthPeer(name, about string, bin func(*harness) string, args ...string) *peer {
	return &peer{
		name:  name,
		about: about,
		front: true,
		start: func(ctx context.Context, h *harness, in *instance) error {
			return startBerth(ctx, h, in, bin(h), args...)
		},
	}
}

// instance is one running peer.
type instance struct {
	peer     *peer
	dir      string // private directory: the app, sockets, logs, ready files
	appDir   string
	readyDir string
	port     int
	token    string // "BENCH_TOKEN=…", in the environment of every process of the peer
	berth    string // berth's --name, for `berth status` (berth only)
	bin      string // the berth binary (berth only)
	pprof    string // the address of its pprof server (berth under -profile only)
	wantApps int
	roots    []*root
}

// root is a process the harness started for a peer.
type root struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when cmd has been waited for
}

func (in *instance) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", in.port, path)
}

// launch starts one process of the instance with the peer's token and ready
// directory in its environment, in its own process group (a Ctrl-C in the
// terminal reaches the harness, which then stops the peer in order).
func (in *instance) launch(name string, argv []string, cwd string, env ...string) error {
	logPath := filepath.Join(in.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = cwd
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), in.token, "BENCH_READY_DIR="+in.readyDir)
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	r := &root{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = cmd.Wait()
	}()
	in.roots = append(in.roots, r)
	return nil
}

func startDirect(_ context.Context, h *harness, in *instance) error {
	in.wantApps = 1
	return in.launch("node", []string{h.node, "app.js"}, in.appDir, "BENCH_LISTEN="+strconv.Itoa(in.port))
}

func startCluster(_ context.Context, h *harness, in *instance) error {
	in.wantApps = appProcs
	return in.launch("cluster", []string{h.node, "cluster.js"}, in.dir,
		"BENCH_LISTEN="+strconv.Itoa(in.port), "BENCH_WORKERS="+strconv.Itoa(appProcs))
}

func startBerth(_ context.Context, h *harness, in *instance, bin string, args ...string) error {
	in.wantApps = appProcs
	in.berth = fmt.Sprintf("bench-%d", os.Getpid())
	in.bin = bin
	argv := []string{bin, "serve", in.appDir,
		"--workers", strconv.Itoa(appProcs),
		"--listen", "127.0.0.1:" + strconv.Itoa(in.port),
		"--spawner", "exec",
		"--name", in.berth,
	}
	argv = append(argv, args...)
	var env []string
	if h.prof != nil {
		e, addr, err := pprofEnv()
		if err != nil {
			return err
		}
		env, in.pprof = append(env, e), addr
	}
	return in.launch("berth", append(argv, h.berthArgs...), in.appDir, env...)
}

func startPassenger(_ context.Context, h *harness, in *instance) error {
	in.wantApps = appProcs
	tmp := filepath.Join(in.dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("passenger temp dir: %w", err)
	}
	return in.launch("passenger", []string{h.tools["passenger"], "start",
		"--engine", "builtin",
		"--address", "127.0.0.1",
		"--port", strconv.Itoa(in.port),
		"--max-pool-size", strconv.Itoa(appProcs),
		"--min-instances", strconv.Itoa(appProcs),
		"--app-type", "node",
		"--startup-file", "app.js",
		"--nodejs", h.node,
		"--environment", "production",
		"--log-file", filepath.Join(in.dir, "passenger-agent.log"),
		"--pid-file", filepath.Join(in.dir, "passenger.pid"),
		"--disable-security-update-check",
		"--disable-anonymous-telemetry",
	}, in.appDir, "TMPDIR="+tmp) // its temp dirs land in ours
}

var nginxConf = template.Must(template.New("nginx").Parse(`# written by make bench
{{if .Root}}user root;
{{end}}worker_processes auto;
daemon off;
master_process on;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 100000;
  client_body_temp_path {{.Dir}}/nginx-client-body;
  proxy_temp_path {{.Dir}}/nginx-proxy-temp;
  fastcgi_temp_path {{.Dir}}/nginx-fastcgi-temp;
  uwsgi_temp_path {{.Dir}}/nginx-uwsgi-temp;
  scgi_temp_path {{.Dir}}/nginx-scgi-temp;
  proxy_cache_path {{.Dir}}/nginx-cache levels=1:2 keys_zone=bench:10m max_size=100m inactive=10m use_temp_path=off;
  upstream app {
{{range .Sockets}}    server unix:{{.}};
{{end}}    keepalive 64;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:{{.Port}};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    location / {
      proxy_pass http://app;
    }
    location = /cached {
      proxy_pass http://app;
      proxy_cache bench;
    }
    location /cached/ {
      proxy_pass http://app;
      proxy_cache bench;
    }
    location /static/ {
      root {{.AppDir}}/public;
    }
  }
}
`))

func startNginx(ctx context.Context, h *harness, in *instance) error {
	in.wantApps = appProcs
	var socks []string
	for i := 1; i <= appProcs; i++ {
		sock := filepath.Join(in.dir, fmt.Sprintf("u%d.sock", i))
		socks = append(socks, sock)
		if err := in.launch(fmt.Sprintf("node%d", i), []string{h.node, "app.js"}, in.appDir, "BENCH_LISTEN="+sock); err != nil {
			return err
		}
	}
	// nginx starts once the app listens: a connection refused before
	// would mark the upstream down for fail_timeout (10 s) in one nginx
	// worker, and the run would measure 502s.
	if err := in.waitApps(ctx, 60*time.Second); err != nil {
		return err
	}
	conf := filepath.Join(in.dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return fmt.Errorf("nginx config: %w", err)
	}
	err = nginxConf.Execute(f, map[string]any{
		"Root": os.Geteuid() == 0, "Dir": in.dir, "AppDir": in.appDir, "Port": in.port, "Sockets": socks,
	})
	if err := errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("nginx config: %w", err)
	}
	return in.launch("nginx", []string{h.tools["nginx"], "-p", in.dir, "-c", conf}, in.dir)
}

// newInstance prepares a private directory with the app for one run of p.
func newInstance(base, name string, p *peer) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	in := &instance{
		peer:  p,
		dir:   filepath.Join(base, name),
		port:  port,
		token: fmt.Sprintf("BENCH_TOKEN=%d-%s", os.Getpid(), name),
	}
	in.appDir = filepath.Join(in.dir, "app")
	in.readyDir = filepath.Join(in.dir, "ready")
	if err := copyTestdata(in.dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(in.readyDir, 0o755); err != nil {
		return nil, fmt.Errorf("ready dir: %w", err)
	}
	return in, nil
}

func copyTestdata(dst string) error {
	sub, err := fs.Sub(testdata, "testdata")
	if err != nil {
		return err
	}
	if err := os.CopyFS(dst, sub); err != nil {
		return fmt.Errorf("copy the bench app to %s: %w", dst, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits until every app process has written its ready file and
// the peer answers GET / with 200 (Passenger starts its app processes on
// the first request, so both happen in one loop), or a process exits, or
// the deadline passes.
func (in *instance) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	status := "no answer"
	for {
		for _, r := range in.roots {
			select {
			case <-r.done:
				return fmt.Errorf("%s exited while starting (%s): %s", r.name, r.cmd.ProcessState, tail(r.log, 600))
			default:
			}
		}
		if req, err := http.NewRequestWithContext(ctx, "GET", in.url("/"), nil); err == nil {
			if resp, err := client.Do(req); err != nil {
				status = err.Error()
			} else {
				resp.Body.Close()
				status = resp.Status
				if resp.StatusCode == 200 && len(readyPids(in.readyDir)) >= in.wantApps {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%s not ready after %s (%d of %d app processes listening, GET /: %s); log: %s",
					in.peer.name, timeout, len(readyPids(in.readyDir)), in.wantApps, status, in.tails())
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// waitApps waits until every app process has written its ready file.
func (in *instance) waitApps(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(readyPids(in.readyDir)) < in.wantApps {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d app processes listening after %s: %w; log: %s",
				in.peer.name, len(readyPids(in.readyDir)), in.wantApps, timeout, ctx.Err(), in.tails())
		case <-tick.C:
		}
	}
	return nil
}

func (in *instance) tails() string { return in.logTails(400) }

// logTails returns the end of every log in the instance's directory (the
// processes' output, nginx's error log, Passenger's agent log).
func (in *instance) logTails(n int) string {
	logs, _ := filepath.Glob(filepath.Join(in.dir, "*.log"))
	var b strings.Builder
	for _, p := range logs {
		if t := tail(p, n); t != "" {
			fmt.Fprintf(&b, "[%s] %s ", filepath.Base(p), t)
		}
	}
	return strings.TrimSpace(b.String())
}

// tail returns the last n bytes of a file, on one line.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// procs finds every process of the instance: the trees under the processes
// the harness started, and the processes carrying its token (those that
// daemonized), split into app processes (the ones that wrote a ready file,
// with their children) and the front end (the rest).
func (in *instance) procs() procSet {
	t := scanProcs()
	var rootPids []int
	for _, r := range in.roots {
		rootPids = append(rootPids, r.cmd.Process.Pid)
	}
	all := t.descendants(rootPids)
	for pid := range t.withEnv(in.token) {
		for d := range t.descendants([]int{pid}) {
			all[d] = true
		}
	}
	apps := t.descendants(readyPids(in.readyDir))
	set := procSet{front: map[int]procStat{}, app: map[int]procStat{}}
	for pid := range all {
		if apps[pid] {
			set.app[pid] = t[pid]
		} else {
			set.front[pid] = t[pid]
		}
	}
	return set
}

// stop ends the instance: SIGTERM to the processes the harness started
// (each peer then stops its own children, as in production), then SIGKILL
// to whatever of the instance still runs after the grace period.
func (in *instance) stop(grace time.Duration) {
	set := in.procs()
	for _, r := range in.roots {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) && in.anyAlive(set) {
		<-tick.C
	}
	for _, m := range []map[int]procStat{set.front, set.app} {
		for pid, st := range m {
			if alive(pid, st) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, r := range in.roots {
		_ = r.cmd.Process.Kill() // no-op once waited for
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
	}
}

func (in *instance) anyAlive(set procSet) bool {
	for _, m := range []map[int]procStat{set.front, set.app} {
		for pid, st := range m {
			if alive(pid, st) {
				return true
			}
		}
	}
	return false
}
