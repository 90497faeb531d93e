package main

// report.go: medians over rounds, same-round ratios, and the markdown.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// results holds every run: load name → peer name → one result per round.
type results map[string]map[string][]result

func (rs results) add(load, peer string, r result) {
	if rs[load] == nil {
		rs[load] = map[string][]result{}
	}
	rs[load][peer] = append(rs[load][peer], r)
}

// inRound returns peer's result of round, if it is valid.
func (rs results) inRound(load, peer string, round int) (result, bool) {
	for _, r := range rs[load][peer] {
		if r.round == round && r.valid() {
			return r, true
		}
	}
	return result{}, false
}

// median of vs; NaN-free callers only. ok is false for an empty slice.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// medianOf is the median of f over the valid runs.
func medianOf(runs []result, f func(result) float64) (float64, bool) {
	var vs []float64
	for _, r := range runs {
		if r.valid() {
			vs = append(vs, f(r))
		}
	}
	return median(vs)
}

// medianKnown is medianOf over the runs where f is known (not negative).
func medianKnown(runs []result, f func(result) float64) (float64, bool) {
	var vs []float64
	for _, r := range runs {
		if v := f(r); r.valid() && v >= 0 {
			vs = append(vs, v)
		}
	}
	return median(vs)
}

// ratio is the median over rounds of f(peer)/f(base) within each round.
func (rs results) ratio(load, peer, base string, f func(result) float64) (float64, bool) {
	return rs.ratioAbove(load, peer, base, f, 0)
}

// minCPU is the smallest CPU per request (µs) a ratio is taken against: a
// cache hit costs the app nothing, and a ratio against nothing means nothing.
const minCPU = 1.0

// ratioAbove is ratio, counting only rounds where f(base) > floor.
func (rs results) ratioAbove(load, peer, base string, f func(result) float64, floor float64) (float64, bool) {
	return median(rs.ratios(load, peer, base, f, floor))
}

// ratios are f(peer)/f(base) of each round in which both peers measured
// something and f(base) > floor.
func (rs results) ratios(load, peer, base string, f func(result) float64, floor float64) []float64 {
	var vs []float64
	for _, r := range rs[load][peer] {
		if !r.valid() {
			continue
		}
		b, ok := rs.inRound(load, base, r.round)
		if !ok || f(b) <= floor {
			continue
		}
		vs = append(vs, f(r)/f(b))
	}
	return vs
}

// line is one run's progress line on stderr.
func (r result) line(l *load) string {
	switch {
	case r.err != nil:
		return "error: " + r.err.Error()
	case !r.valid():
		return fmt.Sprintf("n/a: %.0f of %.0f answers not 2xx/3xx; logs: %s", r.status, r.requests, r.logs)
	case l.kind == downloadLoad:
		return fmt.Sprintf("%.1f MiB in %.2fs, front end peak RSS %s", r.bytes/(1<<20), r.seconds, mib(r.frontRSS))
	case l.kind == spreadLoad && r.ref != nil:
		return fmt.Sprintf("%d URLs: %s req/s, hit rate %s, %s entries, p99 %s, front %.1f µs/req; 1 URL: %s req/s, hit rate %s, front %.1f µs/req; × 1 URL %.2f",
			l.entries, rate(r.rps), pct(r.hitRate), count(r.entries), lat(r.p99), r.frontCPU,
			rate(r.ref.rps), pct(r.ref.hitRate), r.ref.frontCPU, r.rps/r.ref.rps)
	}
	s := fmt.Sprintf("%s req/s  p50 %s  p99 %s  CPU stalls %s  errors %.0f  front %.1f µs/req  app %.1f µs/req  front RSS %s  idle %s  switches/req %s",
		rate(r.rps), lat(r.p50), lat(r.p99), stalls(r.stalls), r.errors, r.frontCPU, r.appCPU, mib(r.frontRSS),
		idleCell(r.idle, r.idle >= 0), switchesCell(r.switches, r.switches >= 0))
	if r.logs != "" {
		s += "\n    logs: " + r.logs
	}
	return s
}

func (h *harness) report(m machine, rs results) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# berth benchmark results\n\n")
	w("Written by `make bench` (see [README.md](README.md) for what each column means).\n")
	w("These are **same-run ratios on a shared, noisy machine**: wrk, the front ends and the app\n")
	w("processes all run on the same %s cores, other work may run beside them, and each peer is\n", m.cpus)
	w("started fresh for every run. Compare peers through the ratios (each the median over rounds of\n")
	w("the ratio measured within one round), not absolute numbers across runs or machines.\n\n")

	w("- date: %s\n", m.date)
	w("- machine: `nproc` %s, %s, kernel %s, load average at start %s\n", m.cpus, m.cpu, m.kernel, m.load)
	var vs []string
	for _, v := range m.versions {
		vs = append(vs, fmt.Sprintf("%s %s", v[0], v[1]))
	}
	w("- versions: %s\n", strings.Join(vs, "; "))
	w("- berth commit: %s\n", m.commit)
	w("- runs: %d interleaved rounds, the peers in turn (reversed every other round); each run %s after a %s warm-up; wrk with 2 threads (1 for 1 connection), `--latency`; %d app processes per peer (1 for direct)\n",
		h.rounds, h.duration, h.warmup, appProcs)
	w("\nPeers:\n\n")
	for _, p := range h.peers {
		about := p.about
		if (strings.HasPrefix(p.name, "berth") || strings.HasPrefix(p.name, "base")) && len(h.berthArgs) > 0 {
			about += fmt.Sprintf(", with `%s`", strings.Join(h.berthArgs, " "))
		}
		w("- **%s**: %s\n", p.name, about)
	}
	for _, s := range h.skipped {
		w("- skipped %s\n", s)
	}

	for _, l := range h.loads {
		w("\n## %s\n\n", l.title)
		switch l.kind {
		case downloadLoad:
			h.downloadTable(w, rs, l)
		case spreadLoad:
			h.spreadTable(w, rs, l)
		default:
			h.wrkTable(w, rs, l)
		}
		if l.note != "" {
			w("\n%s\n", l.note)
		}
		h.failures(w, rs, l)
	}
	return b.String()
}

func (h *harness) wrkTable(w func(string, ...any), rs results, l *load) {
	w("| peer | req/s | × nginx | × cluster | p50 | p99 | CPU stalls | p99, runs without | errors | front µs/req | × nginx | app µs/req | × nginx | front peak RSS | machine idle | switches/req |\n")
	w("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	rps := func(r result) float64 { return r.rps }
	front := func(r result) float64 { return r.frontCPU }
	app := func(r result) float64 { return r.appCPU }
	p99 := func(r result) float64 { return r.p99 }
	for _, p := range h.peers {
		runs := rs[l.name][p.name]
		v, ok := medianOf(runs, rps)
		if !ok {
			w("| %s | n/a | | | | | | | | | | | | | | |\n", p.name)
			continue
		}
		var errs float64
		for _, r := range runs {
			if r.valid() {
				errs += r.errors
			}
		}
		cells := []string{p.name, rate(v),
			spreadCell(rs.ratios(l.name, p.name, "nginx", rps, 0)),
			ratioCell(rs.ratio(l.name, p.name, "cluster", rps)),
			latCell(medianOf(runs, func(r result) float64 { return r.p50 })),
			latCell(medianOf(runs, p99)),
			stallsCell(runs),
			latCell(medianOf(withoutStalls(runs), p99)),
			fmt.Sprintf("%.0f", errs),
		}
		if p.front {
			cells = append(cells,
				cpuCell(medianOf(runs, front)),
				spreadCell(rs.ratios(l.name, p.name, "nginx", front, minCPU)),
			)
		} else {
			cells = append(cells, "–", "–")
		}
		cells = append(cells,
			cpuCell(medianOf(runs, app)),
			spreadCell(rs.ratios(l.name, p.name, "nginx", app, minCPU)),
		)
		if p.front {
			cells = append(cells, mibCell(medianOf(runs, func(r result) float64 { return float64(r.frontRSS) })))
		} else {
			cells = append(cells, "–")
		}
		cells = append(cells,
			idleCell(medianKnown(runs, func(r result) float64 { return r.idle })),
			switchesCell(medianKnown(runs, func(r result) float64 { return r.switches })),
		)
		w("| %s |\n", strings.Join(cells, " | "))
	}
}

// spreadTable compares, per peer, the run over many URLs with the run over
// one, both from the same round.
func (h *harness) spreadTable(w func(string, ...any), rs results, l *load) {
	n := fmt.Sprintf("%d URLs", l.entries)
	if l.entries == 10000 {
		n = "10,000 URLs"
	}
	w("| peer | req/s, %s | req/s, 1 URL | × 1 URL | hit rate, %s | hit rate, 1 URL | entries | p99, %s | errors | front µs/req, %s | front µs/req, 1 URL | front peak RSS |\n", n, n, n, n)
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range h.peers {
		var runs []result
		for _, r := range rs[l.name][p.name] {
			if r.valid() && r.ref != nil {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			w("| %s | n/a | | | | | | | | | | |\n", p.name)
			continue
		}
		med := func(f func(result) float64) (float64, bool) { return medianOf(runs, f) }
		known := func(f func(result) float64) (float64, bool) { return medianKnown(runs, f) }
		var errs float64
		for _, r := range runs {
			errs += r.errors + r.ref.errors
		}
		cells := []string{p.name,
			rateCell(med(func(r result) float64 { return r.rps })),
			rateCell(med(func(r result) float64 { return r.ref.rps })),
			ratioCell(med(func(r result) float64 { return r.rps / r.ref.rps })),
			pctCell(known(func(r result) float64 { return r.hitRate })),
			pctCell(known(func(r result) float64 { return r.ref.hitRate })),
			countCell(known(func(r result) float64 { return float64(r.entries) })),
			latCell(med(func(r result) float64 { return r.p99 })),
			fmt.Sprintf("%.0f", errs),
		}
		if p.front {
			cells = append(cells,
				cpuCell(med(func(r result) float64 { return r.frontCPU })),
				cpuCell(med(func(r result) float64 { return r.ref.frontCPU })),
				mibCell(med(func(r result) float64 { return float64(r.frontRSS) })))
		} else {
			cells = append(cells, "–", "–", "–")
		}
		w("| %s |\n", strings.Join(cells, " | "))
	}
}

func (h *harness) downloadTable(w func(string, ...any), rs results, l *load) {
	w("| peer | front peak RSS | front RSS before | time | MiB/s |\n")
	w("|---|---:|---:|---:|---:|\n")
	for _, p := range h.peers {
		runs := rs[l.name][p.name]
		secs, ok := medianOf(runs, func(r result) float64 { return r.seconds })
		if !ok {
			w("| %s | n/a | | | |\n", p.name)
			continue
		}
		peak, base := "–", "–"
		if p.front {
			peak = mibCell(medianOf(runs, func(r result) float64 { return float64(r.frontRSS) }))
			base = mibCell(medianOf(runs, func(r result) float64 { return float64(r.baseRSS) }))
		}
		speed, _ := medianOf(runs, func(r result) float64 { return r.bytes / (1 << 20) / r.seconds })
		w("| %s | %s | %s | %.2f s | %.0f |\n", p.name, peak, base, secs, speed)
	}
}

// failures lists, under a table, the runs that measured nothing: one line
// per peer and reason, with the rounds it happened in.
func (h *harness) failures(w func(string, ...any), rs results, l *load) {
	first := true
	for _, p := range h.peers {
		var reasons []string
		rounds := map[string][]string{}
		for _, r := range rs[l.name][p.name] {
			if r.valid() {
				continue
			}
			why := fmt.Sprintf("%.0f of %.0f answers were not 2xx/3xx", r.status, r.requests)
			if r.err != nil {
				why = oneLine(r.err.Error(), 300)
			} else if r.status == r.requests {
				why = "no answer was 2xx/3xx"
			}
			if rounds[why] == nil {
				reasons = append(reasons, why)
			}
			rounds[why] = append(rounds[why], fmt.Sprint(r.round))
		}
		for _, why := range reasons {
			if first {
				w("\n")
				first = false
			}
			w("- %s (round %s): %s\n", p.name, strings.Join(rounds[why], ", "), why)
		}
	}
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func rate(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// lat formats a latency in microseconds.
func lat(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 100_000:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.0f ms", us/1000)
}

// pct formats a share (0..1); negative means unknown.
func pct(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f %%", 100*v)
}

func count(n int64) string {
	if n < 0 {
		return "–"
	}
	return fmt.Sprint(n)
}

func pctCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return pct(v)
}

func countCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return count(int64(v))
}

func rateCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return rate(v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ratioCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// spreadCell is the median of the same-round ratios vs, and when the
// rounds differ, their lowest and highest: "0.93 (0.88–1.01)". A target
// read off the median alone hides whether it held in every round.
func spreadCell(vs []float64) string {
	m, ok := median(vs)
	if !ok {
		return "–"
	}
	lo, hi := slices.Min(vs), slices.Max(vs)
	if fmt.Sprintf("%.2f", lo) == fmt.Sprintf("%.2f", hi) {
		return fmt.Sprintf("%.2f", m)
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", m, lo, hi)
}

func latCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return lat(v)
}

func cpuCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.1f", v)
}

func idleCell(v float64, ok bool) string {
	if !ok {
		return "?"
	}
	return fmt.Sprintf("%.1f %%", 100*v)
}

func switchesCell(v float64, ok bool) string {
	if !ok {
		return "?"
	}
	return fmt.Sprintf("%.2f", v)
}

func mibCell(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return mib(int64(v))
}

// stalls shows a run's count of CPU stalls ("?" when it could not be
// counted).
func stalls(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// withoutStalls returns the runs during which no CPU stall was counted.
func withoutStalls(runs []result) []result {
	var out []result
	for _, r := range runs {
		if r.stalls == 0 {
			out = append(out, r)
		}
	}
	return out
}

// stallsCell lists the CPU stalls of a peer's valid runs, round by round:
// the rounds whose p99 they explain.
func stallsCell(runs []result) string {
	var cs []string
	for _, r := range runs {
		if r.valid() {
			cs = append(cs, stalls(r.stalls))
		}
	}
	if len(cs) == 0 {
		return "–"
	}
	return strings.Join(cs, " ")
}
