package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/packaging/testenv"
)

// The multi-host test: four network namespaces the test makes (a client,
// a load balancer, two hosts), joined by veth pairs created inside them,
// so no address or interface ever appears in the machine's own
// namespace:
//
//	client 10.231.0.1 ── 10.231.0.2 lb (HAProxy :80) 10.231.1.2 ── 10.231.1.1 host1 (berth :8080, status :9100, agent :9101)
//	                                                 10.231.2.2 ── 10.231.2.1 host2 (the same)
//
// HAProxy sends PROXY protocol v2, checks /readyz and listens to berth's
// agent, with the configuration README.md shows under "### HAProxy"
// (readmeBlock), addresses moved into the test's namespaces.

// readmeBlock returns the first fenced block of README.md after the line
// heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if ok {
		_, rest, ok = strings.Cut(rest, "\n")
	}
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("README.md has no code block under %q", heading)
	}
	return block
}

// lab is the test's namespaces.
type lab struct {
	t      *testing.T
	prefix string
	dir    string
}

func (l *lab) ns(name string) string { return l.prefix + name }

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newLab(t *testing.T) *lab {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip")
	testenv.NeedCommand(t, "haproxy")
	testenv.NeedCommand(t, "node")
	l := &lab{t: t, prefix: fmt.Sprintf("berth%d-", os.Getpid()), dir: t.TempDir()}
	for _, n := range []string{"client", "lb", "host1", "host2"} {
		l.ip("netns", "add", l.ns(n))
		t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns(n)).Run() })
		l.ip("-n", l.ns(n), "link", "set", "lo", "up")
	}
	for i, peer := range []string{"client", "host1", "host2"} {
		// The pair is born inside lb, one end moved into the peer.
		end := "to-" + peer
		l.ip("-n", l.ns("lb"), "link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", l.ns(peer))
		l.ip("-n", l.ns("lb"), "addr", "add", fmt.Sprintf("10.231.%d.2/24", i), "dev", end)
		l.ip("-n", l.ns("lb"), "link", "set", end, "up")
		l.ip("-n", l.ns(peer), "addr", "add", fmt.Sprintf("10.231.%d.1/24", i), "dev", "eth0")
		l.ip("-n", l.ns(peer), "link", "set", "eth0", "up")
	}
	return l
}

// startHost runs `berth serve` in host N's namespace.
func (l *lab) startHost(n int) *berthProc {
	l.t.Helper()
	addr := fmt.Sprintf("10.231.%d.1", n)
	cmd := exec.Command("ip", "netns", "exec", l.ns(fmt.Sprintf("host%d", n)), berthBin, "serve", "testdata/echo",
		"--name", fmt.Sprintf("fleet%d", n), "--workers", "2",
		"--listen", addr+":8080", "--proxy-protocol", "--trusted-proxy", fmt.Sprintf("10.231.%d.2", n),
		"--status-listen", addr+":9100", "--agent-listen", addr+":9101", "--drain-delay", "1s")
	b := startBerthCmd(l.t, cmd)
	b.WaitForN(`msg="worker ready"`, 2, 30*time.Second)
	return b
}

// startHAProxy runs HAProxy in lb's namespace and returns its stats socket.
func (l *lab) startHAProxy() string {
	l.t.Helper()
	sock := filepath.Join(l.dir, "haproxy.sock")
	readme := readmeBlock(l.t, "### HAProxy")
	conf := strings.NewReplacer("bind :80", "bind 10.231.0.2:80", "10.0.1.1:", "10.231.1.1:", "10.0.2.1:", "10.231.2.1:").Replace(readme)
	if conf == readme {
		l.t.Fatalf("README's HAProxy configuration changed shape; the test cannot move it into its namespaces:\n%s", readme)
	}
	conf = fmt.Sprintf("global\n    stats socket %s mode 600 level admin\n\n", sock) + conf
	cfg := filepath.Join(l.dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns("lb"), "haproxy", "-db", "-f", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	l.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if l.t.Failed() {
			l.t.Logf("haproxy output:\n%s", out.String())
		}
	})
	return sock
}

// serverStat is one server's line of HAProxy's `show stat`.
type serverStat struct {
	Status string // UP, DOWN, DRAIN, MAINT, …
	Cur    string // current sessions
}

func haproxyStats(t *testing.T, sock string) map[string]serverStat {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return nil // not up yet
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "show stat\n")
	b, _ := io.ReadAll(c)
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) < 2 {
		return nil
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	out := map[string]serverStat{}
	for _, rec := range recs[1:] {
		if len(rec) > col["status"] && rec[col["pxname"]] == "shop" {
			out[rec[col["svname"]]] = serverStat{Status: rec[col["status"]], Cur: rec[col["scur"]]}
		}
	}
	return out
}

// waitServer polls HAProxy's view of a server (HAProxy has no way to push
// it) until ok, within a deadline.
func waitServer(t *testing.T, sock, server, what string, ok func(serverStat) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st := haproxyStats(t, sock)
		if s, found := st[server]; found && ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy did not see %s %s within 30s (last: %+v)", server, what, st)
		}
		<-tick.C
	}
}

// inNamespace locks the calling goroutine's thread into namespace ns for
// good: the thread ends with the goroutine (it is never unlocked), so no
// other goroutine ever runs in ns.
func inNamespace(ns string) error {
	runtime.LockOSThread()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// oneRequest does a GET through the load balancer on a new connection
// (dialled on the calling thread: in its namespace).
func oneRequest(path string) (string, error) {
	c, err := net.DialTimeout("tcp", "10.231.0.2:80", 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %.100q", resp.StatusCode, body)
	}
	return string(body), nil
}

// fromClient runs f on a thread in the client's namespace and returns
// its result.
func fromClient(ns string, f func() (string, error)) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		if err := inNamespace(ns); err != nil {
			ch <- res{err: err}
			return
		}
		s, err := f()
		ch <- res{s, err}
	}()
	r := <-ch
	return r.s, r.err
}

// fleetLoad is steady, bounded load: conc clients in the client namespace,
// each sending one request at a time, at most one per 10 ms.
type fleetLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex // protects errs, lastFail
	errs       []string
	lastFail   time.Time // when the last failed request was sent
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

func startFleetLoad(t *testing.T, ns string, conc int) *fleetLoad {
	ctx, cancel := context.WithCancel(context.Background())
	ld := &fleetLoad{stop: cancel}
	for i := 0; i < conc; i++ {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			if err := inNamespace(ns); err != nil {
				ld.record(err, time.Now())
				return
			}
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for ctx.Err() == nil {
				sent := time.Now()
				_, err := oneRequest("/")
				ld.record(err, sent)
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
			}
		}()
	}
	t.Cleanup(func() { ld.halt() })
	return ld
}

func (ld *fleetLoad) record(err error, sent time.Time) {
	if err == nil {
		ld.ok.Add(1)
		return
	}
	ld.failed.Add(1)
	ld.mu.Lock()
	ld.lastFail = sent
	if len(ld.errs) < 10 {
		ld.errs = append(ld.errs, "sent "+sent.Format("15:04:05.000")+": "+firstLine(err.Error()))
	}
	ld.mu.Unlock()
}

func (ld *fleetLoad) halt() {
	ld.stop()
	ld.wg.Wait()
}

func (ld *fleetLoad) errors() []string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]string(nil), ld.errs...)
}

// awaitOK waits until the load has n more successes than at the call, so
// that every phase runs under load.
func (ld *fleetLoad) awaitOK(t *testing.T, n int64) {
	t.Helper()
	want := ld.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ld.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("load made %d successes in 30s, want %d more; errors: %q", ld.ok.Load(), n, ld.errors())
		}
		<-tick.C
	}
}

func TestFleetBehindHAProxy(t *testing.T) {
	l := newLab(t)
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	hosts := map[int]*berthProc{1: l.startHost(1), 2: l.startHost(2)}
	sock := l.startHAProxy()
	for _, s := range []string{"host1", "host2"} {
		waitServer(t, sock, s, "UP", func(s serverStat) bool { return s.Status == "UP" })
	}

	// The app sees the real client address, through HAProxy and PROXY v2.
	body, err := fromClient(l.ns("client"), func() (string, error) { return oneRequest("/whoami") })
	if err != nil {
		t.Fatalf("request through HAProxy: %v", err)
	}
	var r echoReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	if r.XFF != "10.231.0.1" || r.RemoteAddress == nil || *r.RemoteAddress != "10.231.0.1" {
		t.Errorf("app saw X-Forwarded-For %q, remoteAddress %v; want the client's 10.231.0.1", r.XFF, r.RemoteAddress)
	}

	const conc = 4
	ld := startFleetLoad(t, l.ns("client"), conc)
	ld.awaitOK(t, 50)

	// A rolling deploy, host by host: drain, wait, restart, undrain.
	for _, n := range []int{1, 2} {
		name, server := fmt.Sprintf("fleet%d", n), fmt.Sprintf("host%d", n)
		if out, err := exec.Command(berthBin, "drain", name).CombinedOutput(); err != nil {
			t.Fatalf("berth drain %s: %v\n%s", name, err, out)
		}
		waitServer(t, sock, server, "stop sending (DRAIN or DOWN) with no session left", func(s serverStat) bool {
			return s.Status != "UP" && s.Cur == "0"
		})
		hosts[n].Signal(syscall.SIGTERM)
		if code := hosts[n].Wait(30 * time.Second); code != 0 {
			t.Fatalf("berth on %s exited %d after SIGTERM", server, code)
		}
		hosts[n] = l.startHost(n)
		if out, err := exec.Command(berthBin, "undrain", name).CombinedOutput(); err != nil {
			t.Fatalf("berth undrain %s: %v\n%s", name, err, out)
		}
		waitServer(t, sock, server, "UP again", func(s serverStat) bool { return s.Status == "UP" })
		ld.awaitOK(t, 50)
	}
	if f := ld.failed.Load(); f != 0 {
		t.Errorf("the rolling deploy lost %d of %d requests: %q", f, f+ld.ok.Load(), ld.errors())
	}
	t.Logf("rolling deploy: %d requests, none lost", ld.ok.Load())

	// Killing one host's berth loses at most the requests in flight there;
	// HAProxy routes around it.
	// The requests lost are those host1 had taken: in flight at the kill
	// (at most conc), and any whose connection the kernel completed for
	// the dying process's socket in the milliseconds before it closed.
	// None may fail once HAProxy has seen host1 down.
	before := ld.failed.Load()
	hosts[1].Signal(syscall.SIGKILL)
	hosts[1].Wait(10 * time.Second)
	waitServer(t, sock, "host1", "DOWN", func(s serverStat) bool { return s.Status != "UP" })
	down := time.Now()
	ld.awaitOK(t, 100)
	ld.halt()
	ld.mu.Lock()
	lastFail := ld.lastFail
	ld.mu.Unlock()
	if lost := ld.failed.Load() - before; lost > 2*conc || lastFail.After(down) {
		t.Errorf("killing host1's berth lost %d requests (want at most %d), the last sent at %s, HAProxy saw host1 down at %s (none sent after may fail): %q",
			lost, 2*conc, lastFail.Format("15:04:05.000"), down.Format("15:04:05.000"), ld.errors())
	} else {
		t.Logf("killing host1's berth lost %d requests (bound %d): %q", lost, 2*conc, ld.errors())
	}
}

// startNginx runs nginx with the README's stream block in lb's namespace,
// listening on 10.231.0.2:80.
func (l *lab) startNginx() {
	l.t.Helper()
	testenv.NeedCommand(l.t, "nginx")
	const module = "/usr/lib/nginx/modules/ngx_stream_module.so"
	_, err := os.Stat(module)
	testenv.Need(l.t, err == nil, "nginx's stream module not installed (Debian package libnginx-mod-stream)")
	readme := readmeBlock(l.t, "### nginx")
	conf := strings.NewReplacer("listen 80;", "listen 10.231.0.2:80;", "10.0.1.1:", "10.231.1.1:", "10.0.2.1:", "10.231.2.1:").Replace(readme)
	if conf == readme {
		l.t.Fatalf("README's nginx configuration changed shape; the test cannot move it into its namespaces:\n%s", readme)
	}
	conf = fmt.Sprintf("load_module %s;\ndaemon off;\npid %s/nginx.pid;\nerror_log stderr;\nevents {}\n", module, l.dir) + conf
	cfg := filepath.Join(l.dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns("lb"), "nginx", "-c", cfg, "-p", l.dir, "-e", "stderr")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	l.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful; the master ends its workers
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if l.t.Failed() {
			l.t.Logf("nginx output:\n%s", out.String())
		}
	})
}

// TestFleetBehindNginx: the README's nginx stream block in front of two
// berths, with PROXY protocol v1.
func TestFleetBehindNginx(t *testing.T) {
	l := newLab(t)
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	h1 := l.startHost(1)
	l.startHost(2)
	l.startNginx()

	// nginx listens once it has read its configuration: wait for the
	// first answer, within a deadline.
	var body string
	var err error
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		body, err = fromClient(l.ns("client"), func() (string, error) { return oneRequest("/whoami") })
		if err == nil || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	if err != nil {
		t.Fatalf("request through nginx: %v", err)
	}
	var r echoReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	if r.XFF != "10.231.0.1" || r.RemoteAddress == nil || *r.RemoteAddress != "10.231.0.1" {
		t.Errorf("app saw X-Forwarded-For %q, remoteAddress %v; want the client's 10.231.0.1", r.XFF, r.RemoteAddress)
	}

	h1.Signal(syscall.SIGKILL)
	h1.Wait(10 * time.Second)
	for i := 0; i < 20; i++ {
		if _, err := fromClient(l.ns("client"), func() (string, error) { return oneRequest("/") }); err != nil {
			t.Fatalf("request %d with host1's berth gone: %v", i, err)
		}
	}
}
