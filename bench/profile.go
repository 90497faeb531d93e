package main

// profile.go: `make pgo`. With -profile FILE the harness runs its loads
// against a berth built with `-tags berthdebug`, takes a CPU profile of
// berth over each measured run from the build's net/http/pprof, and merges
// them into FILE: the profile `go build` uses for profile-guided
// optimization when it is cmd/berth/default.pgo (DESIGN.md, "Profile-guided
// optimization").

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// profiler collects one CPU profile of berth per measured run.
type profiler struct {
	out   string   // the merged profile, FILE of -profile
	dir   string   // where the runs' profiles are kept until merged (the harness's work directory)
	parts []string // the profiles taken so far
}

// pprofEnv is the environment that makes a berthdebug build serve pprof on
// a free port of loopback, and that address.
func pprofEnv() (env, addr string, err error) {
	port, err := freePort()
	if err != nil {
		return "", "", err
	}
	addr = "127.0.0.1:" + strconv.Itoa(port)
	return "BERTH_PPROF=" + addr, addr, nil
}

// start begins a CPU profile of the instance for d (wrk's measured run,
// which starts now) and returns a function that waits for it and keeps it.
func (p *profiler) start(ctx context.Context, in *instance, d time.Duration) func() error {
	done := make(chan error, 1)
	path := filepath.Join(p.dir, filepath.Base(in.dir)+".pprof") // in.dir goes with the run
	go func() { done <- fetchProfile(ctx, in.pprof, d, path) }()
	return func() error {
		if err := <-done; err != nil {
			return err
		}
		p.parts = append(p.parts, path)
		return nil
	}
}

// fetchProfile writes d of CPU profile from the pprof server at addr to path.
func fetchProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	secs := max(1, int(d.Seconds()))
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile from %s: %w (-profile needs a berth built with -tags berthdebug, as `make pgo` does)", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("CPU profile from %s: %s: %s", url, resp.Status, msg)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("CPU profile from %s: %w", url, err)
	}
	return f.Close()
}

// merge writes the profiles taken into one, with `go tool pprof -proto`
// (the toolchain that builds berth reads it back).
func (p *profiler) merge(ctx context.Context) error {
	if len(p.parts) == 0 {
		return fmt.Errorf("no CPU profile was taken: nothing to write to %s", p.out)
	}
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	args := append([]string{"tool", "pprof", "-proto"}, p.parts...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	out, err := cmd.Output()
	if err != nil {
		var msg string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			msg = string(ee.Stderr)
		}
		return fmt.Errorf("merge %d profiles with %s tool pprof: %w: %s", len(p.parts), goBin, err, msg)
	}
	tmp := p.out + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p.out, err)
	}
	if err := os.Rename(tmp, p.out); err != nil {
		return fmt.Errorf("write %s: %w", p.out, err)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s (%d profiles merged)\n", p.out, len(p.parts))
	return nil
}
