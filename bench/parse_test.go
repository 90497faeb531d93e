package main

// These tests cover the harness's parsing and arithmetic only; nothing here
// starts a peer or measures time (`make bench` does that, never CI).

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{
			name: "plain",
			in:   "4242 (node) S 4200 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 7 0 98765 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
			want: procStat{ppid: 4200, state: 'S', ticks: 200, starttime: 98765},
		},
		{
			// Passenger names its processes "Passenger NodeApp: /path"; a
			// name may also hold ") " itself.
			name: "name with spaces and parentheses",
			in:   "7 (Passenger (x) S 1) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 555 0 0 0",
			want: procStat{ppid: 1, state: 'R', ticks: 7, starttime: 555},
		},
		{name: "truncated", in: "7 (node) S 1 7 7", wantErr: true},
		{name: "no name", in: "7 node S 1", wantErr: true},
		{name: "bad number", in: "7 (node) S 1 7 7 0 -1 0 0 0 0 0 x 4 0 0 20 0 1 0 555 0 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tberth\nVmPeak:\t 1000 kB\nVmHWM:\t   20000 kB\nVmRSS:\t   19456 kB\nThreads:\t7\n"
	if got, want := parseVmRSS(status), int64(19456*1024); got != want {
		t.Errorf("parseVmRSS = %d, want %d", got, want)
	}
	if got := parseVmRSS("Name:\tkthreadd\nState:\tS\n"); got != 0 {
		t.Errorf("parseVmRSS without VmRSS = %d, want 0", got)
	}
}

func TestDescendants(t *testing.T) {
	tab := procTable{
		1:  {ppid: 0},
		10: {ppid: 1},
		11: {ppid: 10},
		12: {ppid: 11},
		20: {ppid: 1},
		21: {ppid: 20},
	}
	got := tab.descendants([]int{10, 99})
	want := map[int]bool{10: true, 11: true, 12: true}
	if len(got) != len(want) {
		t.Fatalf("descendants = %v, want %v", got, want)
	}
	for pid := range want {
		if !got[pid] {
			t.Errorf("descendants lacks %d: %v", pid, got)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:4000/
  2 threads and 64 connections
  Latency Distribution
     50%    1.20ms
     99%    4.70ms
  300000 requests in 5.00s, 30.00MB read
Requests/sec:  60000.00
BENCHJSON {"requests":300000,"duration_us":5000000,"bytes":31457280,"connect":0,"read":2,"write":0,"status":5,"timeout":1,"p50_us":1200,"p99_us":4700,"max_us":9000}
`
	s, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 300000 || s.DurationUS != 5e6 || s.P50US != 1200 || s.P99US != 4700 || s.Read != 2 || s.Status != 5 || s.Timeout != 1 {
		t.Errorf("parseWrk = %+v", s)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:4000 Connection refused"); err == nil {
		t.Error("parseWrk without a summary: no error")
	}
}

func TestMedianAndRatio(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
		ok   bool
	}{
		{nil, 0, false},
		{[]float64{3}, 3, true},
		{[]float64{5, 1, 3}, 3, true},
		{[]float64{4, 1, 3, 2}, 2.5, true},
	} {
		got, ok := median(tt.in)
		if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("median(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}

	rs := results{}
	// Round 2's berth failed and round 3 has no nginx: only round 1 and
	// the valid rounds with both peers count, each against its own round.
	rs.add("l", "nginx", result{round: 1, requests: 10, rps: 100})
	rs.add("l", "berth", result{round: 1, requests: 10, rps: 50})
	rs.add("l", "nginx", result{round: 2, requests: 10, rps: 200})
	rs.add("l", "berth", result{round: 2, err: errors.New("did not start")})
	rs.add("l", "berth", result{round: 3, requests: 10, rps: 300})
	rs.add("l", "static", result{round: 1, requests: 10, status: 10})
	rps := func(r result) float64 { return r.rps }
	if got, ok := rs.ratio("l", "berth", "nginx", rps); !ok || got != 0.5 {
		t.Errorf("ratio berth/nginx = %v, %v; want 0.5, true", got, ok)
	}
	if _, ok := rs.ratio("l", "static", "nginx", rps); ok {
		t.Error("ratio of a peer whose answers were all errors: ok")
	}
	if got, ok := medianOf(rs["l"]["berth"], rps); !ok || got != 175 {
		t.Errorf("medianOf berth = %v, %v; want 175 (rounds 1 and 3), true", got, ok)
	}
}

// A × nginx cell shows the median and, when the rounds differ, their range.
func TestSpreadCell(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want string
	}{
		{nil, "–"},
		{[]float64{0.9}, "0.90"},
		{[]float64{0.901, 0.899}, "0.90"},
		{[]float64{1.01, 0.88, 0.93}, "0.93 (0.88–1.01)"},
	} {
		if got := spreadCell(tt.in); got != tt.want {
			t.Errorf("spreadCell(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
	rs := results{}
	rs.add("l", "nginx", result{round: 1, requests: 10, rps: 100})
	rs.add("l", "berth", result{round: 1, requests: 10, rps: 90})
	rs.add("l", "nginx", result{round: 2, requests: 10, rps: 50})
	rs.add("l", "berth", result{round: 2, requests: 10, rps: 55})
	rps := func(r result) float64 { return r.rps }
	if got := spreadCell(rs.ratios("l", "berth", "nginx", rps, 0)); got != "1.00 (0.90–1.10)" {
		t.Errorf("berth × nginx = %q, want the median of the same-round ratios 0.90 and 1.10 with their range", got)
	}
}

func TestPick(t *testing.T) {
	names := func(p *peer) string { return p.name }
	t.Setenv("BENCH_PEERS", "berth, nginx")
	got, err := pick("BENCH_PEERS", allPeers(), names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].name != "nginx" || got[1].name != "berth" {
		t.Errorf("pick kept %d peers, want nginx then berth (the table's order)", len(got))
	}
	t.Setenv("BENCH_PEERS", "berth,haproxy")
	if _, err := pick("BENCH_PEERS", allPeers(), names); err == nil {
		t.Error("pick with an unknown name: no error")
	}
}

// Neighbours swap places every other round, and the peers as configured
// stay as they were.
func TestRoundOrder(t *testing.T) {
	peers := allPeers()[:4]
	names := func(ps []*peer) string {
		var b strings.Builder
		for _, p := range ps {
			b.WriteString(p.name + " ")
		}
		return b.String()
	}
	given := names(peers)
	for round, want := range map[int]string{1: given, 3: given,
		2: names([]*peer{peers[3], peers[2], peers[1], peers[0]})} {
		if got := names(roundOrder(peers, round)); got != want {
			t.Errorf("round %d: %s, want %s", round, got, want)
		}
	}
	if names(peers) != given {
		t.Errorf("roundOrder changed the configured order to %s", names(peers))
	}
}

func TestParseCacheCounts(t *testing.T) {
	out := []byte(`{"app": "bench-1", "pid": 7, "cache": {"hits": 90, "misses": 10, "stale": 0, "bypass": 3, "refreshes": 0, "entries": 10000, "bytes": 5000000, "max_bytes": 67108864}}`)
	c, ok := parseCacheCounts(out)
	if !ok || c.Hits != 90 || c.Misses != 10 || c.Entries != 10000 || c.answered() != 100 {
		t.Errorf("parseCacheCounts = %+v, %v", c, ok)
	}
	if _, ok := parseCacheCounts([]byte(`{"app": "x", "cache": null}`)); ok {
		t.Error("a berth with --cache=off has no counts")
	}
}

func TestBasePeersNeedABinary(t *testing.T) {
	var h harness
	if err := h.configure("bin/berth", ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.peers {
		if strings.HasPrefix(p.name, "base") {
			t.Errorf("peer %s measured without -base", p.name)
		}
	}
	t.Setenv("BENCH_PEERS", "base")
	if err := (&harness{}).configure("bin/berth", ""); err == nil {
		t.Error("BENCH_PEERS=base without -base: no error")
	}
	var hb harness
	if err := hb.configure("bin/berth", "/tmp/old-berth"); err != nil || len(hb.peers) != 1 || hb.peers[0].name != "base" {
		t.Errorf("BENCH_PEERS=base with -base: peers %v, error %v", hb.peers, err)
	}
}

// The p99 of the runs without a CPU stall leaves out the rounds a stall
// explains, and the runs whose stalls could not be counted.
func TestP99WithoutStalls(t *testing.T) {
	p99 := func(r result) float64 { return r.p99 }
	runs := []result{
		{requests: 10, stalls: 0, p99: 4000},
		{requests: 10, stalls: 2, p99: 90000},
		{requests: 10, stalls: 0, p99: 6000},
		{requests: 10, stalls: -1, p99: 80000},
		{err: errors.New("peer did not start"), stalls: 0, p99: 1},
	}
	if got := latCell(medianOf(withoutStalls(runs), p99)); got != lat(5000) {
		t.Errorf("p99 without stalls = %q, want %q (the median of 4 and 6 ms)", got, lat(5000))
	}
	if got := latCell(medianOf(withoutStalls(runs[1:2]), p99)); got != "–" {
		t.Errorf("p99 without stalls when every run had one = %q, want –", got)
	}
}

func TestStallsCell(t *testing.T) {
	runs := []result{
		{requests: 10, stalls: 0},
		{err: errors.New("peer did not start"), stalls: 5},
		{requests: 10, stalls: 3},
		{requests: 10, stalls: -1},
	}
	if got := stallsCell(runs); got != "0 3 ?" {
		t.Errorf("stallsCell = %q, want %q (valid runs only, ? for unknown)", got, "0 3 ?")
	}
	if got := stallsCell(runs[1:2]); got != "–" {
		t.Errorf("stallsCell of no valid run = %q", got)
	}
}

func TestParseMachineStat(t *testing.T) {
	const stat = "cpu  100 5 40 800 20 3 7 11 50 0\ncpu0 50 2 20 400 10 1 3 5 25 0\ncpu1 50 3 20 400 10 2 4 6 25 0\nintr 12345 0 0\nctxt 987654\nbtime 1765000000\nprocs_running 3\n"
	got, err := parseMachineStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	// idle = idle + iowait; total = user..steal, not guest (already in user).
	want := machineStat{idle: 820, total: 986, switches: 987654}
	if got != want {
		t.Errorf("parseMachineStat = %+v, want %+v", got, want)
	}
	for _, bad := range []string{
		"cpu0 1 2 3 4 5 6 7 8\nctxt 5\n",    // no summary line
		"cpu  1 2 3 4 5 6 7 8\n",            // no ctxt
		"cpu  1 2 3\nctxt 5\n",              // too few states
		"cpu  1 2 3 x 5 6 7 8\nctxt 5\n",    // not a number
		"cpu  1 2 3 4 5 6 7 8\nctxt five\n", // not a number
	} {
		if _, err := parseMachineStat(bad); err == nil {
			t.Errorf("parseMachineStat(%q): no error", bad)
		}
	}
}

func TestMachineCells(t *testing.T) {
	idle := func(r result) float64 { return r.idle }
	runs := []result{
		{requests: 10, idle: 0.01},
		{requests: 10, idle: -1}, // /proc/stat unreadable
		{requests: 10, idle: 0.03},
		{err: errors.New("peer did not start"), idle: 0.5},
	}
	if got, want := idleCell(medianKnown(runs, idle)), "2.0 %"; got != want {
		t.Errorf("idle cell = %q, want %q (the median of the known, valid runs)", got, want)
	}
	if got := idleCell(medianKnown(runs[1:2], idle)); got != "?" {
		t.Errorf("idle cell with nothing known = %q, want ?", got)
	}
	if got, want := switchesCell(0.618, true), "0.62"; got != want {
		t.Errorf("switchesCell = %q, want %q", got, want)
	}
}
