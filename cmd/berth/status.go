package main

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
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"berth/spawner"
)

// statusReply is what the status client reads from GET /status (the
// admin server's appStatus); fields it does not know are passed through
// by --json untouched.
type statusReply struct {
	App     string    `json:"app"`
	Pid     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Wanted  int       `json:"wanted"`
	Ready   int       `json:"ready"`
	Queued  int64     `json:"queued"`
	Served  uint64    `json:"served"`
	Failing string    `json:"failing"`
	Spawner string    `json:"spawner"`
	Listen  []string  `json:"listen"`
	Workers []struct {
		Name     string    `json:"name"`
		Pid      int       `json:"pid"`
		Inflight int64     `json:"inflight"`
		Served   uint64    `json:"served"`
		Since    time.Time `json:"since"`
		Restarts int       `json:"restarts"`
		// Memory is the worker's cgroup (systemd) or process tree; 0 from
		// an older berth.
		Memory      uint64  `json:"memory"`
		CPUSeconds  float64 `json:"cpu_seconds"`
		LastRecycle string  `json:"last_recycle"`
	} `json:"workers"`
	Starting            []startingStatus `json:"starting"`
	SpawnTimeoutSeconds float64          `json:"spawn_timeout_seconds"`
	Recycles            int              `json:"recycles"`
	Memory              uint64           `json:"memory"`
	CPUSeconds          float64          `json:"cpu_seconds"`
	Cache               *cacheStatus     `json:"cache"` // nil with --cache=off
}

// staleState is the state of an app whose admin socket is left over.
const staleState = "not running (left over from a berth that died)"

// appEntry is one app found on the machine, running or not.
type appEntry struct {
	App   string `json:"app"`
	User  string `json:"user"`
	State string `json:"state"` // running, starting, failing, staleState, no access
	Dir   string `json:"dir"`   // its runtime directory
	// MemoryBytes is the resident memory of berth and its workers, when
	// /proc lets this user read it.
	MemoryBytes int64           `json:"memory_bytes,omitempty"`
	Status      json.RawMessage `json:"status,omitempty"` // GET /status, when it answered
	status      *statusReply
	err         error // why it did not answer
}

// runtimeBases are the directories that hold apps' runtime directories
// that this user may look at: its own base, and as root every user's
// ($XDG_RUNTIME_DIR/berth of each logged-in user, the temp dir fallbacks).
func runtimeBases() []string {
	bases := []string{runtimeBase()}
	if os.Getenv("BERTH_RUNTIME_BASE") != "" || os.Geteuid() != 0 {
		return bases
	}
	more, _ := filepath.Glob("/run/user/*/berth")
	bases = append(bases, more...)
	more, _ = filepath.Glob(filepath.Join(os.TempDir(), "berth-[0-9]*"))
	return append(bases, more...)
}

// findApps lists the apps with an admin socket in the runtime bases, asks
// each for its status (for at most timeout), and sorts them by name.
func findApps(ctx context.Context, name string) []*appEntry {
	var apps []*appEntry
	for _, base := range runtimeBases() {
		matches, _ := filepath.Glob(filepath.Join(base, "*", adminSocket))
		for _, m := range matches {
			dir := filepath.Dir(m)
			if name != "" && filepath.Base(dir) != name {
				continue
			}
			apps = append(apps, &appEntry{App: filepath.Base(dir), Dir: dir, User: ownerName(dir)})
		}
	}
	done := make(chan struct{})
	for _, a := range apps {
		go func() {
			defer func() { done <- struct{}{} }()
			a.query(ctx)
		}()
	}
	for range apps {
		<-done
	}
	sort.Slice(apps, func(i, j int) bool {
		if apps[i].App != apps[j].App {
			return apps[i].App < apps[j].App
		}
		return apps[i].User < apps[j].User
	})
	return apps
}

// query asks the app's berth for its status and fills State.
func (a *appEntry) query(ctx context.Context) {
	body, err := adminGet(ctx, a.Dir, "/status")
	if err != nil {
		a.err = err
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			a.State = staleState
		case errors.Is(err, os.ErrPermission):
			a.State = "no access (root or " + a.User + " only)"
		default:
			a.State = "not answering"
		}
		return
	}
	var st statusReply
	if err := json.Unmarshal(body, &st); err != nil {
		a.State, a.err = "not answering", fmt.Errorf("%s answered badly: %w", filepath.Join(a.Dir, adminSocket), err)
		return
	}
	a.Status, a.status = body, &st
	switch {
	case st.Failing != "" && st.Ready < st.Wanted:
		a.State = "failing"
	case st.Ready < st.Wanted:
		a.State = "starting"
	default:
		a.State = "running"
	}
	pids := []int{st.Pid}
	for _, w := range st.Workers {
		pids = append(pids, w.Pid)
	}
	a.MemoryBytes = memory(pids...)
}

// adminClient talks to the admin socket in dir.
func adminClient(dir string) *http.Client {
	path := filepath.Join(dir, adminSocket)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// adminGet GETs path from the admin socket in dir and returns the body.
func adminGet(ctx context.Context, dir, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://berth"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := adminClient(dir).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, err
}

// locateApp is the runtime directory of the berth serving app: in this
// user's runtime base, or, as root, the only one found in any user's.
func locateApp(app string) (string, error) {
	own := appRuntimeDir(app)
	if _, err := os.Lstat(filepath.Join(own, adminSocket)); err == nil {
		return own, nil
	}
	var dirs []string
	for _, base := range runtimeBases() {
		if _, err := os.Lstat(filepath.Join(base, app, adminSocket)); err == nil {
			dirs = append(dirs, filepath.Join(base, app))
		}
	}
	switch len(dirs) {
	case 0:
		return "", fmt.Errorf("no berth serves %s here (no admin socket %s; is it running, and as this user? root sees every user's apps)", app, filepath.Join(own, adminSocket))
	case 1:
		return dirs[0], nil
	default:
		return "", fmt.Errorf("several berths are named %s (%s); run berth status as the user of the one you mean", app, strings.Join(dirs, ", "))
	}
}

// pickApp is the runtime directory of the app a command means: the one
// named, or the only one running.
func pickApp(ctx context.Context, pos []string) (app, dir string, err error) {
	switch len(pos) {
	case 1:
		dir, err := locateApp(pos[0])
		return pos[0], dir, err
	case 0:
		var running []*appEntry
		for _, a := range findApps(ctx, "") {
			if a.err == nil {
				running = append(running, a)
			}
		}
		switch len(running) {
		case 1:
			return running[0].App, running[0].Dir, nil
		case 0:
			return "", "", fmt.Errorf("no berth is running here (no admin socket under %s)", strings.Join(runtimeBases(), ", "))
		}
		var names []string
		for _, a := range running {
			names = append(names, a.App)
		}
		return "", "", fmt.Errorf("several apps run (%s): name one", strings.Join(names, ", "))
	default:
		return "", "", &usageError{fmt.Sprintf("want one app name, got %q", pos)}
	}
}

// adminError explains an admin socket that did not answer.
func adminError(app, dir string, err error) error {
	path := filepath.Join(dir, adminSocket)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s is %s: %s answers no more", app, staleState, path)
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "connect:"):
		return fmt.Errorf("cannot reach berth serving %s at %s: %w (is it running? as root, or as the user running it?)", app, path, err)
	}
	return err
}

const statusAbout = `Without NAME, lists every berth app running here (your own; as root,
every user's) in one table: state, workers ready/wanted, requests in flight,
served, queued, uptime and memory. With NAME, shows that app's workers, like
passenger-status. Flags may come before or after NAME.`

// runStatus is `berth status [NAME] [--json]`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("status", "berth status [NAME] [--json] [--memory]", statusAbout)
	asJSON := cmd.Bool("json", false, "print the status as JSON (without NAME: a list, one object per app)")
	asMemory := cmd.Bool("memory", false, "with NAME: the memory and CPU time of berth and of every worker, with totals")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return usageExit("status", err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch len(pos) {
	case 0:
		return printAppList(findApps(ctx, ""), *asJSON, stdout, stderr)
	case 1:
	default:
		return usageExit("status", &usageError{fmt.Sprintf("want at most one app name, got %q", pos)}, stderr)
	}
	app := pos[0]
	dir, err := locateApp(app)
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", err)
		return 1
	}
	body, err := adminGet(ctx, dir, "/status")
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", adminError(app, dir, err))
		return 1
	}
	if *asJSON {
		var out bytes.Buffer
		if err := json.Indent(&out, bytes.TrimSpace(body), "", "  "); err != nil {
			fmt.Fprintf(stderr, "berth status: %s answered badly: %v\n", filepath.Join(dir, adminSocket), err)
			return 1
		}
		out.WriteByte('\n')
		stdout.Write(out.Bytes())
		return 0
	}
	var st statusReply
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "berth status: %s answered badly: %v\n", filepath.Join(dir, adminSocket), err)
		return 1
	}
	if *asMemory {
		printMemory(&st, stdout)
		return 0
	}
	printAppDetail(&st, stdout)
	return 0
}

// printMemory is `berth status NAME --memory`, like
// passenger-memory-stats: berth itself, every worker, and the totals.
func printMemory(st *statusReply, stdout io.Writer) {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PROCESS\tPID\tMEMORY\tCPU\t")
	fmt.Fprintf(tw, "berth\t%d\t%s\t%s\t\n", st.Pid, spawner.FormatBytes(st.Memory), cpuSeconds(st.CPUSeconds))
	mem, secs := st.Memory, st.CPUSeconds
	for _, w := range st.Workers {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", w.Name, w.Pid, spawner.FormatBytes(w.Memory), cpuSeconds(w.CPUSeconds))
		mem += w.Memory
		secs += w.CPUSeconds
	}
	fmt.Fprintf(tw, "total (%d workers)\t\t%s\t%s\t\n", len(st.Workers), spawner.FormatBytes(mem), cpuSeconds(secs))
	tw.Flush()
}

func cpuSeconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Millisecond)
}

// printAppList prints the apps as a table (or a JSON list) and returns the
// exit code.
func printAppList(apps []*appEntry, asJSON bool, stdout, stderr io.Writer) int {
	if asJSON {
		if apps == nil {
			apps = []*appEntry{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(apps)
		return 0
	}
	if len(apps) == 0 {
		fmt.Fprintf(stdout, "no berth app is running here (looked in %s)\n", strings.Join(runtimeBases(), ", "))
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tUSER\tSTATE\tWORKERS\tIN FLIGHT\tSERVED\tQUEUED\tUPTIME\tMEMORY")
	var notes []string
	for _, a := range apps {
		st := a.status
		if st == nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\n", a.App, a.User, a.State)
			if a.State == staleState {
				notes = append(notes, fmt.Sprintf("%s: %s is left over; the next berth serve of %s takes it over", a.App, a.Dir, a.App))
			} else {
				notes = append(notes, fmt.Sprintf("%s: %v", a.App, adminError(a.App, a.Dir, a.err)))
			}
			continue
		}
		var inflight int64
		for _, w := range st.Workers {
			inflight += w.Inflight
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%s\t%s\n", a.App, a.User, a.State, st.Ready, st.Wanted,
			inflight, st.Served, st.Queued, shortDuration(time.Since(st.Since)), humanBytes(a.MemoryBytes))
		if st.Failing != "" {
			notes = append(notes, fmt.Sprintf("%s: failing to start: %s", a.App, firstLine(st.Failing)))
		}
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(stdout, n)
	}
	return 0
}

// printAppDetail prints one app's status and its workers.
func printAppDetail(st *statusReply, stdout io.Writer) {
	fmt.Fprintf(stdout, "app %s: berth pid %d, up %s, %d/%d workers ready, %d queued, %d requests served (%s spawner; %s)\n",
		st.App, st.Pid, shortDuration(time.Since(st.Since)), st.Ready, st.Wanted, st.Queued, st.Served, st.Spawner, strings.Join(st.Listen, ", "))
	if st.Failing != "" {
		fmt.Fprintf(stdout, "failing to start: %s\n", st.Failing)
	}
	if st.Cache != nil {
		fmt.Fprintln(stdout, st.Cache)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tIN FLIGHT\tSERVED\tUP\tRESTARTS\tMEMORY\tCPU\tLAST RECYCLE")
	for _, w := range st.Workers {
		mem := int64(w.Memory)
		if mem == 0 {
			mem = memory(w.Pid)
		}
		last := w.LastRecycle
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", w.Name, w.Pid, w.Inflight, w.Served, shortDuration(time.Since(w.Since)), w.Restarts,
			humanBytes(mem), cpuSeconds(w.CPUSeconds), last)
	}
	spawnTimeout := time.Duration(st.SpawnTimeoutSeconds * float64(time.Second))
	for _, w := range st.Starting {
		fmt.Fprintf(tw, "%s\t%d\tstarting for %s of %s: %s\n", w.Name, w.Pid, shortDuration(time.Since(w.Since)), spawnTimeout, w.Waiting)
	}
	tw.Flush()
	for _, w := range st.Starting {
		if len(w.Output) > 0 {
			fmt.Fprintf(stdout, "%s's last output:\n    %s\n", w.Name, strings.Join(w.Output, "\n    "))
		}
	}
}

// memory is the resident memory (VmRSS) of the processes, 0 when /proc
// does not tell (a process of another user's, or gone).
func memory(pids ...int) int64 {
	var total int64
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			return 0
		}
		sc := bufio.NewScanner(f)
		found := false
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				found = err == nil
				total += kb << 10
			}
		}
		f.Close()
		if !found {
			return 0
		}
	}
	return total
}

// humanBytes writes n as 512K, 48M, 1.2G; 0 as "-" (not known).
func humanBytes(n int64) string {
	switch {
	case n <= 0:
		return "-"
	case n < 1<<20:
		return fmt.Sprintf("%dK", n>>10)
	case n < 1<<30:
		return fmt.Sprintf("%dM", n>>20)
	default:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	}
}

// shortDuration writes d as 45s, 12m3s, 5h2m or 3d4h.
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// ownerName is the name of the user owning path (its uid if unnamed).
func ownerName(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return "?"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	uid := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
}

const restartAbout = `Restarts the workers of app NAME (or of the only app running) one by one,
as SIGHUP or 'systemctl reload NAME' does: each new worker is ready before
the old one stops taking requests. Returns when every worker is replaced.`

// runRestart is `berth restart [NAME]`: a rolling restart, as SIGHUP or
// `systemctl reload NAME` does; it returns when every worker is replaced.
func runRestart(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("restart", "berth restart [NAME] [--timeout D]", restartAbout)
	timeout := cmd.Duration("timeout", 5*time.Minute, "give up waiting after this long")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return usageExit("restart", err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	app, dir, err := pickApp(ctx, pos)
	if err != nil {
		return usageExit("restart", err, stderr)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://berth/restart", nil)
	resp, err := adminClient(dir).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "berth restart: %v\n", adminError(app, dir, err))
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
