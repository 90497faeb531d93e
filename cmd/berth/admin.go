package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"berth/balancer"
	"berth/spawner"
)

// adminSocket is the admin API's socket in the app's runtime directory
// (mode 0600: root, or the user berth runs as).
const adminSocket = "admin.sock"

// appStatus is what `berth status` shows, and GET /status returns.
type appStatus struct {
	App      string         `json:"app"`
	Pid      int            `json:"pid"`
	Since    time.Time      `json:"since"`
	Wanted   int            `json:"wanted"`
	Ready    int            `json:"ready"`
	Queued   int64          `json:"queued"`
	Served   uint64         `json:"served"`
	Failing  string         `json:"failing,omitempty"`
	Workers  []workerStatus `json:"workers"`
	Spawner  string         `json:"spawner"`
	Listen   []string       `json:"listen"`
	Restarts string         `json:"restart,omitempty"`
}

type workerStatus struct {
	Name     string    `json:"name"`
	Pid      int       `json:"pid"`
	Inflight int64     `json:"inflight"`
	Served   uint64    `json:"served"`
	Since    time.Time `json:"since"`
	Restarts int       `json:"restarts"`
}

// buildStatus joins the supervisor's view of the workers with the pool's.
func buildStatus(app string, since time.Time, listen []string, spawnerName string, st spawner.Status, pool *balancer.Pool) appStatus {
	loads := map[int]*balancer.Upstream{}
	for _, u := range pool.Upstreams() {
		loads[u.Pid] = u
	}
	s := appStatus{
		App: app, Pid: os.Getpid(), Since: since, Wanted: st.Wanted, Ready: st.Ready,
		Queued: pool.Queued(), Served: pool.Total(), Failing: st.Failing, Spawner: spawnerName, Listen: listen,
	}
	for _, w := range st.Workers {
		ws := workerStatus{Name: w.Name, Pid: w.Pid, Since: w.Since, Restarts: w.Restarts}
		if u := loads[w.Pid]; u != nil {
			ws.Inflight, ws.Served = u.Inflight(), u.Served()
		}
		s.Workers = append(s.Workers, ws)
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].Name < s.Workers[j].Name })
	return s
}

// adminClient talks to the admin socket of the berth serving app.
func adminClient(app string) (*http.Client, string) {
	path := filepath.Join(appRuntimeDir(app), adminSocket)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}, path
}

// findApps lists the apps whose berth answers on its admin socket in the
// runtime base (a socket left by a berth that died does not count).
func findApps() []string {
	base := filepath.Dir(appRuntimeDir("x"))
	matches, _ := filepath.Glob(filepath.Join(base, "*", adminSocket))
	var apps []string
	for _, m := range matches {
		if c, err := net.DialTimeout("unix", m, time.Second); err == nil {
			c.Close()
			apps = append(apps, filepath.Base(filepath.Dir(m)))
		}
	}
	return apps
}

// pickApp is the app a status or restart command means: the one named, or
// the only one running.
func pickApp(fs *flag.FlagSet) (string, error) {
	switch fs.NArg() {
	case 1:
		return fs.Arg(0), nil
	case 0:
		apps := findApps()
		if len(apps) == 1 {
			return apps[0], nil
		}
		if len(apps) == 0 {
			return "", fmt.Errorf("no berth is running here (no admin socket under %s)", filepath.Dir(appRuntimeDir("x")))
		}
		return "", fmt.Errorf("several apps run (%s): name one", strings.Join(apps, ", "))
	default:
		return "", fmt.Errorf("want one app name, got %q", fs.Args())
	}
}

func adminError(app, path string, err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "connect:") {
		return fmt.Errorf("cannot reach berth serving %s at %s: %w (is it running? as root, or as the user running it?)", app, path, err)
	}
	return err
}

// runStatus is `berth status [--json] [NAME]`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berth status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	app, err := pickApp(fs)
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", err)
		return 1
	}
	c, path := adminClient(app)
	resp, err := c.Get("http://berth/status")
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", adminError(app, path, err))
		return 1
	}
	defer resp.Body.Close()
	var st appStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		fmt.Fprintf(stderr, "berth status: %s answered badly: %v\n", path, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	fmt.Fprintf(stdout, "app %s: berth pid %d, up %s, %d/%d workers ready, %d queued, %d requests served (%s spawner; %s)\n",
		st.App, st.Pid, time.Since(st.Since).Round(time.Second), st.Ready, st.Wanted, st.Queued, st.Served, st.Spawner, strings.Join(st.Listen, ", "))
	if st.Failing != "" {
		fmt.Fprintf(stdout, "failing to start: %s\n", st.Failing)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tIN FLIGHT\tSERVED\tUP\tRESTARTS")
	for _, w := range st.Workers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\n", w.Name, w.Pid, w.Inflight, w.Served, time.Since(w.Since).Round(time.Second), w.Restarts)
	}
	tw.Flush()
	return 0
}

// runRestart is `berth restart [NAME]`: a rolling restart, as SIGHUP or
// `systemctl reload NAME` does; it returns when every worker is replaced.
func runRestart(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berth restart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 5*time.Minute, "give up waiting after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	app, err := pickApp(fs)
	if err != nil {
		fmt.Fprintf(stderr, "berth restart: %v\n", err)
		return 1
	}
	c, path := adminClient(app)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://berth/restart", nil)
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "berth restart: %v\n", adminError(app, path, err))
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintf(stderr, "berth restart: %s: %s", app, body)
		return 1
	}
	fmt.Fprintf(stdout, "%s: workers restarted one by one\n", app)
	return 0
}
