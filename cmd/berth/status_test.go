package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// leaveStaleSocket makes base/app/admin.sock as a berth that died leaves
// it: the socket file without a listener.
func leaveStaleSocket(t *testing.T, base, app string) {
	t.Helper()
	dir := filepath.Join(base, app)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, adminSocket), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

// TestStatusListsEveryApp: `berth status` without a name is one table of
// every app (two running, one left over by a dead berth), and --json works
// before or after the name.
func TestStatusListsEveryApp(t *testing.T) {
	base := t.TempDir()
	t.Setenv("BERTH_RUNTIME_BASE", base)
	shop := startBerth(t, "testdata/echo", "--workers", "2", "--name", "shop")
	blog := startBerth(t, "testdata/echo", "--workers", "1", "--name", "blog")
	shop.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
	blog.WaitFor(`msg="worker ready"`, 20*time.Second)
	for range 3 {
		getEcho(t, nil, shop.URL+"/")
	}
	leaveStaleSocket(t, base, "ghost")

	out, err := exec.Command(berthBin, "status").CombinedOutput()
	if err != nil {
		t.Fatalf("berth status: %v\n%s", err, out)
	}
	table := string(out)
	t.Logf("berth status:\n%s", table)
	for _, re := range []string{
		`(?m)^APP +USER +STATE +WORKERS +IN FLIGHT +SERVED +QUEUED +UPTIME +MEMORY$`,
		`(?m)^blog +\S+ +running +1/1 +0 +\d+ +0 +\d+s +\d+[KMG]$`,
		`(?m)^shop +\S+ +running +2/2 +0 +[3-9]\d* +0 +\d+s +\d+[KMG]$`,
		`(?m)^ghost +\S+ +not running \(left over from a berth that died\) +-`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("berth status lacks a line matching %s", re)
		}
	}
	if i, j := strings.Index(table, "blog"), strings.Index(table, "shop"); i > j {
		t.Error("apps not sorted by name")
	}

	// --json without a name: a list.
	out, err = exec.Command(berthBin, "status", "--json").Output()
	if err != nil {
		t.Fatalf("berth status --json: %v", err)
	}
	var list []appEntry
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("berth status --json: %v in %s", err, out)
	}
	states := map[string]string{}
	for _, a := range list {
		states[a.App] = a.State
	}
	if states["shop"] != "running" || states["blog"] != "running" || states["ghost"] != staleState || len(list) != 3 {
		t.Errorf("berth status --json states = %v", states)
	}

	// NAME --json and --json NAME are the same.
	for _, args := range [][]string{{"status", "shop", "--json"}, {"status", "--json", "shop"}} {
		out, err := exec.Command(berthBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		var st statusReply
		if err := json.Unmarshal(out, &st); err != nil || st.App != "shop" || st.Wanted != 2 || len(st.Workers) != 2 {
			t.Errorf("berth %s: %v: %+v", strings.Join(args, " "), err, st)
		}
	}

	// The one left over says so.
	var stderr bytes.Buffer
	if code := run([]string{"status", "ghost"}, &bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "ghost is not running (left over from a berth that died)") {
		t.Errorf("berth status ghost: exit %d: %s", code, stderr.String())
	}
}

// TestStatusNoApps: nothing running is a short note, and an empty JSON
// list.
func TestStatusNoApps(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	var out, errOut bytes.Buffer
	if code := run([]string{"status"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "no berth app is running here") {
		t.Errorf("exit %d: %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"status", "--json"}, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("--json: exit %d: %q", code, out.String())
	}
}

func TestShortDurationAndBytes(t *testing.T) {
	for d, want := range map[time.Duration]string{
		4 * time.Second: "4s", 61 * time.Second: "1m1s", 3*time.Hour + 5*time.Minute: "3h5m", 50 * time.Hour: "2d2h",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{0: "-", 2048: "2K", 48 << 20: "48M", 3 << 29: "1.5G"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
