package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The profiles of two runs, taken over pprof as from a berthdebug build,
// merge into one that go tool pprof reads, holding the samples of both.
func TestProfileTakeAndMerge(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to merge profiles with")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	dir := t.TempDir()
	p := &profiler{out: filepath.Join(dir, "default.pgo"), dir: dir}
	ctx := context.Background()
	for _, run := range []string{"r1-hello-c64-berth", "r1-cached-c64-berth"} {
		in := &instance{dir: filepath.Join(dir, run), pprof: strings.TrimPrefix(srv.URL, "http://")}
		wait := p.start(ctx, in, time.Second)
		spin(time.Second) // something for the profile to see
		if err := wait(); err != nil {
			t.Fatalf("%s: %v", run, err)
		}
	}
	if len(p.parts) != 2 {
		t.Fatalf("kept %d profiles, want 2", len(p.parts))
	}
	t.Setenv("GO", goBin)
	if err := p.merge(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, "tool", "pprof", "-raw", p.out).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -raw %s: %v\n%s", p.out, err, out)
	}
	// Each run's profile lasts about its second (0.99 s has been seen):
	// merged, about two; one run alone would be about one.
	var d float64
	if m := regexp.MustCompile(`Duration: ([0-9.]+)`).FindSubmatch(out); m != nil {
		d, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if d < 1.8 || d > 2.5 {
		t.Errorf("the merged profile does not cover both 1 s runs:\n%.300s", out)
	}
	if !strings.Contains(string(out), "bench.spin") {
		t.Errorf("the merged profile has no sample of the spinning function:\n%.2000s", out)
	}
	if _, err := os.Stat(p.out + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file was left behind: %v", err)
	}
}

// spin keeps a CPU busy for d.
func spin(d time.Duration) int {
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 1000 {
			n += i * i
		}
	}
	return n
}

// A berth built without pprof gets an error that says which build to use.
func TestProfileNeedsADebugBuild(t *testing.T) {
	port, err := freePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	err = fetchProfile(context.Background(), "127.0.0.1:"+strconv.Itoa(port), time.Second, filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(err.Error(), "-tags berthdebug") {
		t.Fatalf("got %v, want an error naming the berthdebug build", err)
	}
	p := &profiler{out: filepath.Join(t.TempDir(), "default.pgo")}
	if err := p.merge(context.Background()); err == nil || !strings.Contains(err.Error(), "no CPU profile") {
		t.Fatalf("merge of nothing: got %v", err)
	}
}
