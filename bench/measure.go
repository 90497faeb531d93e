package main

// measure.go: what the harness reads from /proc — the processes of a peer,
// their CPU time and their resident memory.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procStat is the part of /proc/<pid>/stat the harness uses.
type procStat struct {
	ppid      int
	state     byte
	ticks     uint64 // utime + stime, in clock ticks
	starttime uint64 // clock ticks after boot; tells a reused pid apart
}

// parseStat parses the text of /proc/<pid>/stat. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(s string) (procStat, error) {
	end := strings.LastIndexByte(s, ')')
	if end < 0 || end+2 > len(s) {
		return procStat{}, fmt.Errorf("stat %q: no command name", s)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("stat %q: %d fields after the name", s, len(f))
	}
	var st procStat
	var err error
	st.state = f[0][0]
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat times: %w", err)
	}
	st.ticks = utime + stime
	st.starttime = start
	return st, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// machineStat is the part of /proc/stat the harness uses: the machine as
// a whole, whoever ran.
type machineStat struct {
	idle, total uint64 // clock ticks over all CPUs: idle + iowait, and every state
	switches    uint64 // context switches since boot
}

// parseMachineStat parses the text of /proc/stat: the "cpu" line (the sum
// over CPUs) and the "ctxt" line.
func parseMachineStat(s string) (machineStat, error) {
	var m machineStat
	var cpu, ctxt bool
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "cpu":
			// user nice system idle iowait irq softirq steal guest guest_nice;
			// guest time is already counted in user.
			if len(f) < 9 {
				return machineStat{}, fmt.Errorf("/proc/stat cpu line %q: %d fields", strings.TrimSpace(line), len(f))
			}
			for i, v := range f[1:min(len(f), 9)] {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return machineStat{}, fmt.Errorf("/proc/stat cpu line: %w", err)
				}
				m.total += n
				if i == 3 || i == 4 {
					m.idle += n
				}
			}
			cpu = true
		case "ctxt":
			if len(f) != 2 {
				return machineStat{}, fmt.Errorf("/proc/stat ctxt line %q", strings.TrimSpace(line))
			}
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return machineStat{}, fmt.Errorf("/proc/stat ctxt line: %w", err)
			}
			m.switches = n
			ctxt = true
		}
	}
	if !cpu || !ctxt {
		return machineStat{}, errors.New("/proc/stat: no cpu or ctxt line")
	}
	return m, nil
}

// readMachineStat reads /proc/stat; ok is false when it cannot be read (the
// columns from it then show "?").
func readMachineStat() (machineStat, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineStat{}, false
	}
	m, err := parseMachineStat(string(b))
	return m, err == nil
}

// parseVmRSS returns VmRSS in bytes from the text of /proc/<pid>/status
// (0 for a process without one: a zombie or a kernel thread).
func parseVmRSS(s string) int64 {
	for line := range strings.Lines(s) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}

func readRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseVmRSS(string(b))
}

// procTable is one walk of /proc: every live process and its stat.
type procTable map[int]procStat

func scanProcs() procTable {
	t := procTable{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.state == 'Z' || st.state == 'X' {
			continue
		}
		t[pid] = st
	}
	return t
}

// descendants returns roots and every process below them in t.
func (t procTable) descendants(roots []int) map[int]bool {
	children := map[int][]int{}
	for pid, st := range t {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	out := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if _, ok := t[pid]; !ok || out[pid] {
			continue
		}
		out[pid] = true
		queue = append(queue, children[pid]...)
	}
	return out
}

// withEnv returns the processes in t whose environment holds entry
// ("KEY=VALUE"). Processes that daemonize (Passenger's watchdog and core)
// leave the tree of the process the harness started but keep its
// environment.
func (t procTable) withEnv(entry string) map[int]bool {
	out := map[int]bool{}
	want := []byte(entry)
	for pid := range t {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(b, []byte{0}) {
			if bytes.Equal(kv, want) {
				out[pid] = true
				break
			}
		}
	}
	return out
}

// alive reports whether pid still runs the process seen as st.
func alive(pid int, st procStat) bool {
	now, err := readStat(pid)
	return err == nil && now.state != 'Z' && now.state != 'X' && now.starttime == st.starttime
}

// procSet is the processes of one running peer, split into the front end
// (the proxy or the cluster primary) and the app processes (those that
// wrote a ready file, and their children).
type procSet struct {
	front map[int]procStat
	app   map[int]procStat
}

// cpuDelta sums, over the processes of set, the CPU time (utime+stime, in
// clock ticks) used since set was read. A process that has exited since
// counts nothing (its last slice is lost); the peers' processes live for
// the whole run.
func cpuDelta(set map[int]procStat) uint64 {
	var sum uint64
	for pid, before := range set {
		now, err := readStat(pid)
		if err != nil || now.starttime != before.starttime || now.ticks < before.ticks {
			continue
		}
		sum += now.ticks - before.ticks
	}
	return sum
}

func sumRSS(set map[int]procStat) int64 {
	var sum int64
	for pid := range set {
		sum += readRSS(pid)
	}
	return sum
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times.
func clockTicks(ctx context.Context) float64 {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// rssSampler records the peak of the summed VmRSS of a fixed set of
// processes, sampling every interval until Stop.
type rssSampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex // protects peak
	peak   int64
}

func startRSSSampler(ctx context.Context, set map[int]procStat, interval time.Duration) *rssSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &rssSampler{cancel: cancel, done: make(chan struct{})}
	s.sample(set)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				s.sample(set)
			}
		}
	}()
	return s
}

func (s *rssSampler) sample(set map[int]procStat) {
	v := sumRSS(set)
	s.mu.Lock()
	s.peak = max(s.peak, v)
	s.mu.Unlock()
}

// Stop takes a last sample, stops the sampling goroutine and returns the peak.
func (s *rssSampler) Stop(set map[int]procStat) int64 {
	s.cancel()
	<-s.done
	s.sample(set)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// readyPids lists the pids named by the files in dir (the app processes
// that are listening).
func readyPids(dir string) []int {
	ents, _ := os.ReadDir(dir)
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(filepath.Base(e.Name())); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
