package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
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

var forRe = regexp.MustCompile(`addr=(\S+) for=(\S+)`)

// fleetAddrs waits for the status and agent listeners' log lines.
func fleetAddrs(t *testing.T, b *berthProc) (status, agent string) {
	t.Helper()
	b.WaitForN(`msg=listening .*for=`, 2, 10*time.Second)
	out := b.Output()
	for _, m := range forRe.FindAllStringSubmatch(out, -1) {
		switch m[2] {
		case "status-listen":
			status = m[1]
		case "agent-listen":
			agent = m[1]
		}
	}
	if status == "" || agent == "" {
		t.Fatalf("no status or agent address in:\n%s", out)
	}
	return status, agent
}

func agentSays(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestDrainUndrainAndSIGTERM walks a berth through what a load balancer
// sees: ready, drained by `berth drain`, undrained, then SIGTERM with a
// drain delay (draining at once, still serving, then gone).
func TestDrainUndrainAndSIGTERM(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	b := startBerth(t, "testdata/echo", "--workers", "1", "--name", "fleetshop",
		"--status-listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0", "--access-log", "--drain-delay", "3s")
	status, agent := fleetAddrs(t, b)
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	readyz := "http://" + status + "/readyz"
	if code, body := get(t, nil, readyz); code != 200 {
		t.Fatalf("/readyz with a ready worker = %d %q, want 200", code, body)
	}
	if got := agentSays(t, agent); got != "up ready 100%\n" {
		t.Errorf("agent says %q, want up ready 100%%", got)
	}

	// The app gets a request id, and the access log names it.
	req, _ := http.NewRequest("GET", b.URL+"/logged", nil)
	req.Header.Set("X-Request-ID", "trusted-loopback-id-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b.WaitFor(`msg=request .*berth.path=/logged berth.status=200 .*berth.worker=w\d+ .*berth.request_id=trusted-loopback-id-1 berth.client=127.0.0.1`, 5*time.Second)

	if out, err := exec.Command(berthBin, "drain", "fleetshop").CombinedOutput(); err != nil || !strings.Contains(string(out), "draining") {
		t.Fatalf("berth drain: %v\n%s", err, out)
	}
	if code, _ := get(t, nil, readyz); code != 503 {
		t.Errorf("/readyz after berth drain = %d, want 503", code)
	}
	if got := agentSays(t, agent); got != "drain\n" {
		t.Errorf("agent says %q after berth drain, want drain", got)
	}
	if code, _ := get(t, nil, b.URL+"/"); code != 200 {
		t.Errorf("a drained berth answered %d, want 200: it keeps serving", code)
	}
	if out, err := exec.Command(berthBin, "undrain", "fleetshop").CombinedOutput(); err != nil {
		t.Fatalf("berth undrain: %v\n%s", err, out)
	}
	if code, _ := get(t, nil, readyz); code != 200 {
		t.Errorf("/readyz after berth undrain = %d, want 200", code)
	}
	out, err := exec.Command(berthBin, "metrics", "fleetshop").Output()
	if err != nil || !strings.Contains(string(out), `berth_requests_total{app="fleetshop",code="2xx",method="GET",worker="w`) {
		t.Errorf("berth metrics: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "berth_buffer_hold_failures_total{app=\"fleetshop\"} 0\n") {
		t.Errorf("berth metrics lacks the buffering link's series:\n%s", out)
	}
	// The whole scrape, with the Go and process series, as Prometheus's
	// own checker sees it.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(out))
		if res, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on berth metrics: %v\n%s", err, res)
		}
	} else if testenv.Strict() {
		t.Error("promtool not installed (Debian package prometheus); BERTH_TEST_STRICT=1 makes this a failure")
	} else {
		t.Log("promtool not installed (Debian package prometheus): scrape not checked")
	}

	b.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, _ := get(t, nil, readyz)
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d 2s after SIGTERM", code)
		}
		time.Sleep(20 * time.Millisecond) // polling the state the test waits on, bounded
	}
	if got := agentSays(t, agent); got != "drain\n" {
		t.Errorf("agent says %q after SIGTERM, want drain", got)
	}
	if code, _ := get(t, nil, b.URL+"/"); code != 200 {
		t.Errorf("during the drain delay berth answered %d, want 200", code)
	}
	if code := b.Wait(20 * time.Second); code != 0 {
		t.Errorf("berth exited %d after SIGTERM, want 0", code)
	}
}

// TestUntrustedRequestIDReplaced: a peer outside --trusted-proxy cannot
// choose the request id or the forwarded address.
func TestUntrustedRequestIDReplaced(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "1", "--trusted-proxy", "192.0.2.0/24", "--access-log")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	req, _ := http.NewRequest("GET", b.URL+"/x", nil)
	req.Header.Set("X-Request-ID", "forged")
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Scan()
	if body := sc.Text(); !strings.Contains(body, `"xff":"127.0.0.1"`) {
		t.Errorf("app saw %s; want X-Forwarded-For 127.0.0.1 only", body)
	}
	line := b.WaitFor(`msg=request .*berth.path=/x `, 5*time.Second)
	if strings.Contains(line, "request_id=forged") || !regexp.MustCompile(`berth.request_id=[0-9a-f]{16}-[0-9a-f]+`).MatchString(line) {
		t.Errorf("access log: %s; want a generated request id", line)
	}
}

// TestReadmePrometheusExamples checks the README's scrape config and
// alerts with promtool.
func TestReadmePrometheusExamples(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testenv.Need(t, err == nil, "promtool not installed (Debian package prometheus)")
	dir := t.TempDir()
	for _, c := range []struct{ heading, check string }{
		{"### Prometheus", "config"},
		{"Four alerts:", "rules"},
	} {
		path := filepath.Join(dir, c.check+".yml")
		if err := os.WriteFile(path, []byte(readmeBlock(t, c.heading)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "check", c.check, path).CombinedOutput(); err != nil {
			t.Errorf("promtool check %s on README's block under %q: %v\n%s", c.check, c.heading, err, out)
		}
	}
}
