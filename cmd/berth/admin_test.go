package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStatusAndRestartCommands(t *testing.T) {
	base := t.TempDir()
	t.Setenv("BERTH_RUNTIME_BASE", base)
	b := startBerth(t, "testdata/echo", "--workers", "2", "--name", "shop")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	for i := 0; i < 5; i++ {
		getEcho(t, nil, b.URL+"/")
	}

	out, err := exec.Command(berthBin, "status", "--json", "shop").CombinedOutput()
	if err != nil {
		t.Fatalf("berth status: %v\n%s", err, out)
	}
	var st appStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if st.App != "shop" || st.Ready != 2 || len(st.Workers) != 2 || st.Served < 5 || st.Spawner != "exec" {
		t.Fatalf("status %+v", st)
	}
	oldPids := map[int]bool{st.Workers[0].Pid: true, st.Workers[1].Pid: true}

	out, err = exec.Command(berthBin, "status", "shop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "app shop: berth pid") || !strings.Contains(string(out), "WORKER") {
		t.Fatalf("berth status (table): %v\n%s", err, out)
	}

	out, err = exec.Command(berthBin, "restart", "shop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "restarted") {
		t.Fatalf("berth restart: %v\n%s", err, out)
	}
	for i := 0; i < 10; i++ {
		if p := getEcho(t, nil, b.URL+"/").Pid; oldPids[p] {
			t.Fatalf("old worker %d still answers after berth restart", p)
		}
	}

	// A second berth with the same name is refused, saying why.
	var stderr bytes.Buffer
	second := exec.Command(berthBin, "serve", "testdata/echo", "--name", "shop", "--listen", "127.0.0.1:0")
	second.Stderr = &stderr
	if err := second.Run(); err == nil || !strings.Contains(stderr.String(), "already serves an app named shop") {
		t.Fatalf("second berth for shop: %v\n%s", err, stderr.String())
	}
}

func TestStatusWithoutBerth(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	var stderr bytes.Buffer
	if code := run([]string{"status", "nothere"}, &bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "no berth serves nothere here") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func TestRollingRestartUnderLoadLosesNothing(t *testing.T) {
	b := startBerth(t, "testdata/echo", "--workers", "2")
	b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	stop := make(chan struct{})
	type tally struct {
		ok, failed int
		errs       []string
	}
	result := make(chan tally)
	for c := 0; c < 4; c++ { // four clients in a bounded loop
		go func() {
			var tl tally
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					result <- tl
					return
				default:
				}
				resp, err := http.Get(b.URL + "/slow?ms=20")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					tl.failed++
					tl.errs = append(tl.errs, err.Error())
				} else {
					tl.ok++
				}
			}
			result <- tl
		}()
	}
	b.WaitForN(`slow request started`, 20, 10*time.Second)
	b.Signal(syscall.SIGHUP)
	b.WaitFor(`msg="rolling restart done"`, 30*time.Second)
	b.WaitForN(`slow request started`, strings.Count(b.Output(), "slow request started")+20, 10*time.Second)
	close(stop)
	var total tally
	for c := 0; c < 4; c++ {
		tl := <-result
		total.ok += tl.ok
		total.failed += tl.failed
		total.errs = append(total.errs, tl.errs...)
	}
	t.Logf("during the rolling restart: %d requests succeeded, %d failed", total.ok, total.failed)
	if total.failed > 0 {
		t.Fatalf("%d requests failed during the rolling restart: %v", total.failed, total.errs[:min(5, len(total.errs))])
	}
	if n := strings.Count(b.Output(), `msg="worker replaced"`); n != 2 {
		t.Fatalf("%d workers replaced, want 2", n)
	}
}
