// Command bench is berth's benchmark harness, run by `make bench`: wrk
// against berth and the systems a user would pick instead (a direct node
// process, Node's cluster module, nginx in front of node, Passenger), in
// interleaved rounds on loopback, with the CPU per request and the memory
// of each peer's front end and app processes read from /proc. It writes a
// markdown report to stdout and to bench/RESULTS.md. See bench/README.md.
//
// It is a program, not a test: `go test ./...` compiles it and runs only
// the parsing tests beside it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// harness is one benchmark session.
type harness struct {
	berth        string            // the berth binary
	node         string            // node
	tools        map[string]string // wrk, curl, nginx, passenger → path
	skipped      []string          // what was left out, and why
	rounds       int
	duration     time.Duration
	warmup       time.Duration
	peers        []*peer
	loads        []*load
	work         string    // temp dir, removed at the end
	script       string    // the wrk summary script
	spreadScript string    // the wrk script over many URLs, with the summary hook
	clk          float64   // clock ticks per second of /proc times
	keep         bool      // BENCH_KEEP: leave the work directory for a look at the logs
	berthArgs    []string  // BENCH_BERTH_ARGS: more arguments for berth serve
	base         string    // -base: a second berth binary, the peers base and base-goroutine
	prof         *profiler // -profile: a CPU profile of berth per run, merged (make pgo)
	stalls       *stallWatch
}

func main() {
	berth := flag.String("berth", "bin/berth", "the berth binary to measure")
	out := flag.String("out", "bench/RESULTS.md", "where to write the report (also printed to stdout); empty for stdout only")
	commit := flag.String("commit", "", "the commit -berth was built from, for the report (default: this checkout's)")
	base := flag.String("base", "", "a second berth binary (an earlier build), measured as the peers base and base-goroutine in the same rounds")
	profile := flag.String("profile", "", "write a CPU profile of berth over the measured runs to this file (make pgo): "+
		"-berth must be a build with -tags berthdebug; the peers default to berth and berth-goroutine, the rounds to 1, -out to none")
	flag.Parse()
	if *profile != "" {
		given := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if !given["out"] {
			*out = ""
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *berth, *base, *out, *commit, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, berth, base, out, commit, profile string) error {
	h := &harness{tools: map[string]string{}}
	if profile != "" {
		h.prof = &profiler{out: profile}
	}
	if err := h.configure(berth, base); err != nil {
		return err
	}
	if err := h.install(ctx); err != nil {
		return err
	}
	h.clk = clockTicks(ctx)

	work, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	h.keep = os.Getenv("BENCH_KEEP") != ""
	if h.keep {
		fmt.Fprintln(os.Stderr, "bench: BENCH_KEEP is set: keeping the peers' directories and logs in", work)
	} else {
		defer os.RemoveAll(work)
	}
	h.work = work
	if h.prof != nil {
		h.prof.dir = work
	}
	if h.script, err = writeScript(work); err != nil {
		return err
	}
	if h.spreadScript, err = writeSpreadScript(work); err != nil {
		return err
	}

	h.stalls = startStallWatch()
	if h.stalls.count() < 0 {
		fmt.Fprintln(os.Stderr, "bench: cannot run a real-time thread per CPU (run as root to count the machine's stalls)")
	}
	env := describeMachine(ctx, h)
	if commit != "" {
		env.commit = commit + " (given with -commit)"
	}
	res := results{}
	total := h.rounds * len(h.loads) * len(h.peers)
	n := 0
	// Interleaved: every round runs every load against every peer, so a
	// slow patch of the shared machine hits all peers of a round alike;
	// and in turn, so that a drift within rounds favours no peer.
	for round := 1; round <= h.rounds; round++ {
		peers := roundOrder(h.peers, round)
		for _, l := range h.loads {
			for _, p := range peers {
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted; peers stopped, %s removed", work)
				}
				n++
				r := h.runOne(ctx, round, l, p)
				r.round = round
				res.add(l.name, p.name, r)
				fmt.Fprintf(os.Stderr, "[%d/%d] round %d %-10s %-9s %s\n", n, total, round, l.name, p.name, r.line(l))
			}
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; peers stopped, %s removed", work)
	}

	if h.prof != nil {
		if err := h.prof.merge(ctx); err != nil {
			return err
		}
	}
	report := h.report(env, res)
	fmt.Print(report)
	if out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
		fmt.Fprintln(os.Stderr, "bench: wrote", out)
	}
	return nil
}

// roundOrder is the order the peers run in, in a round: as given in odd
// rounds, reversed in even ones. With a fixed order the machine's drift
// over a round (a host that lends CPU in bursts and then takes it back)
// would always favour the same one of two neighbours, nginx or berth.
func roundOrder(peers []*peer, round int) []*peer {
	if round%2 == 1 {
		return peers
	}
	r := slices.Clone(peers)
	slices.Reverse(r)
	return r
}

// runOne starts p fresh, runs l against it and stops it.
func (h *harness) runOne(ctx context.Context, round int, l *load, p *peer) result {
	in, err := newInstance(h.work, fmt.Sprintf("r%d-%s-%s", round, l.name, p.name), p)
	if err != nil {
		return result{err: err}
	}
	if !h.keep {
		defer os.RemoveAll(in.dir)
	}
	defer in.stop(10 * time.Second)
	if err := p.start(ctx, h, in); err != nil {
		return result{err: err}
	}
	if err := in.waitReady(ctx, 60*time.Second); err != nil {
		return result{err: err}
	}
	switch l.kind {
	case downloadLoad:
		return h.runDownload(ctx, in, l)
	case spreadLoad:
		return h.runSpread(ctx, in, l, round)
	}
	return h.runWrk(ctx, in, l)
}

// configure reads the knobs from the environment.
func (h *harness) configure(berth, base string) error {
	h.berth = berth
	h.base = base
	h.rounds = 3
	if h.prof != nil {
		h.rounds = 1
	}
	h.duration = 5 * time.Second
	h.warmup = time.Second
	if v := os.Getenv("BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("BENCH_ROUNDS=%q: want a number of rounds from 1 to 100", v)
		}
		h.rounds = n
	}
	for _, k := range []struct {
		env string
		dst *time.Duration
	}{{"BENCH_DURATION", &h.duration}, {"BENCH_WARMUP", &h.warmup}} {
		v := os.Getenv(k.env)
		if v == "" {
			continue
		}
		d, err := parseSeconds(v)
		if err != nil || d < 0 || d > time.Hour || (k.env == "BENCH_DURATION" && d < time.Second) {
			return fmt.Errorf("%s=%q: want whole seconds such as 5 or 5s (duration at least 1s)", k.env, v)
		}
		*k.dst = d
	}
	h.berthArgs = strings.Fields(os.Getenv("BENCH_BERTH_ARGS"))
	var err error
	if h.peers, err = pick("BENCH_PEERS", allPeers(), func(p *peer) string { return p.name }); err != nil {
		return err
	}
	if h.prof != nil && os.Getenv("BENCH_PEERS") == "" {
		// Only berth's CPU is profiled.
		h.peers = slices.DeleteFunc(h.peers, func(p *peer) bool { return p.name != "berth" && p.name != "berth-goroutine" })
	}
	if h.base == "" {
		h.peers = slices.DeleteFunc(h.peers, func(p *peer) bool { return strings.HasPrefix(p.name, "base") })
		if len(h.peers) == 0 {
			return errors.New("BENCH_PEERS names only base peers: give their binary with -base")
		}
	}
	if h.loads, err = pick("BENCH_LOADS", allLoads(), func(l *load) string { return l.name }); err != nil {
		return err
	}
	return nil
}

// parseSeconds accepts "5", "5s" or any time.Duration, rounded to seconds
// (wrk's unit).
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	return d.Round(time.Second), nil
}

// pick narrows all to the comma-separated names in the environment
// variable env, keeping the order of all.
func pick[T any](env string, all []T, name func(T) string) ([]T, error) {
	v := os.Getenv(env)
	if v == "" {
		return all, nil
	}
	var names []string
	for _, x := range all {
		names = append(names, name(x))
	}
	want := map[string]bool{}
	for _, w := range strings.Split(v, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if !slices.Contains(names, w) {
			return nil, fmt.Errorf("%s: unknown name %q (known: %s)", env, w, strings.Join(names, ","))
		}
		want[w] = true
	}
	var out []T
	for _, x := range all {
		if want[name(x)] {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s=%q names nothing", env, v)
	}
	return out, nil
}

// install finds (and if need be installs) the tools; a missing optional
// peer is dropped with a note in the report.
func (h *harness) install(ctx context.Context) error {
	var err error
	if h.node, err = lookTool("node"); err != nil {
		return errors.New("node not found: install Node.js 20 or newer (it comes with the development machine)")
	}
	for _, t := range []struct {
		tool string
		pkgs []string
	}{{"wrk", []string{"wrk"}}, {"curl", []string{"curl"}}} {
		if h.tools[t.tool], err = ensureTool(ctx, t.tool, t.pkgs...); err != nil {
			return err
		}
	}
	var keep []*peer
	for _, p := range h.peers {
		switch {
		case strings.HasPrefix(p.name, "base"):
			abs, err := filepath.Abs(h.base)
			if err != nil {
				return fmt.Errorf("-base binary: %w", err)
			}
			if _, err := os.Stat(abs); err != nil {
				return fmt.Errorf("-base binary: %w", err)
			}
			h.base = abs
		case strings.HasPrefix(p.name, "berth"):
			if _, err := os.Stat(h.berth); err != nil {
				h.skipped = append(h.skipped, fmt.Sprintf("berth: %s not found (run `make build`, or use `make bench`)", h.berth))
				continue
			}
			abs, err := filepath.Abs(h.berth)
			if err != nil {
				return fmt.Errorf("berth binary: %w", err)
			}
			h.berth = abs
		case p.tool == "nginx":
			if h.tools["nginx"], err = ensureTool(ctx, "nginx", "nginx-light", "nginx"); err != nil {
				h.skipped = append(h.skipped, "nginx: "+err.Error())
				continue
			}
		case p.tool == "passenger":
			if h.tools["passenger"], err = ensureTool(ctx, "passenger", "passenger"); err != nil {
				h.skipped = append(h.skipped, "passenger: "+err.Error())
				continue
			}
		}
		keep = append(keep, p)
	}
	for _, s := range h.skipped {
		fmt.Fprintln(os.Stderr, "bench: skipped", s)
	}
	if len(keep) == 0 {
		return errors.New("no peer left to measure")
	}
	h.peers = keep
	return nil
}
