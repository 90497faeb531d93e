package spawner

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcessUsage is the resident memory and CPU time of process pid alone
// (berth itself, say).
func ProcessUsage(pid int) (Usage, error) { return procUsage(pid, false) }

// treeUsage sums the resident memory and CPU time of process root, the
// members of its process group and all their descendants, from /proc.
func treeUsage(root int) (Usage, error) { return procUsage(root, true) }

func procUsage(root int, tree bool) (Usage, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return Usage{}, fmt.Errorf("process tree of pid %d: %w", root, err)
	}
	type proc struct {
		ppid, pgrp int
		rss        uint64 // pages
		cpu        uint64 // clock ticks
	}
	procs := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: fields start
		// after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 > len(b) {
			continue
		}
		f := bytes.Fields(b[i+2:])
		if len(f) < 22 {
			continue
		}
		num := func(k int) uint64 { n, _ := strconv.ParseUint(string(f[k]), 10, 64); return n }
		// Fields from 3 (state): ppid 4, pgrp 5, utime 14, stime 15,
		// cutime 16, cstime 17, rss 24; f[0] is field 3.
		procs[pid] = proc{ppid: int(num(1)), pgrp: int(num(2)), cpu: num(11) + num(12) + num(13) + num(14), rss: num(21)}
	}
	if _, ok := procs[root]; !ok {
		return Usage{}, fmt.Errorf("process %d is gone", root)
	}
	in := map[int]bool{root: true}
	for pid, p := range procs {
		if !tree {
			break
		}
		if pid == root || p.pgrp == root {
			in[pid] = true
		}
	}
	for grew := tree; grew; { // descendants that left the group
		grew = false
		for pid, p := range procs {
			if !in[pid] && in[p.ppid] {
				in[pid], grew = true, true
			}
		}
	}
	var u Usage
	var ticks uint64
	page := uint64(os.Getpagesize())
	for pid := range in {
		u.Memory += procs[pid].rss * page
		ticks += procs[pid].cpu
	}
	u.CPU = time.Duration(ticks) * time.Second / clockTicks
	return u, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100
