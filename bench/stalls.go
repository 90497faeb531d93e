package main

// stalls.go: how often the machine itself stopped. On a virtual machine
// whose CPU time the host rations, a CPU can be frozen for the rest of
// the host's accounting period (100 ms here): every thread on it stops,
// whatever the guest's scheduler wanted. wrk corrects its latencies for
// coordinated omission (each late answer also stands for the requests
// that would have been sent meanwhile), so a few such freezes during a
// run set its p99, and they land on whichever peer runs then. The
// harness counts them, per run, so that a p99 can be read for what it is.

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Stall detection: a real-time thread on each CPU sleeps stallTick at a
// time and counts the wakes that came stallMin or more late. Nothing in
// the guest keeps a real-time thread from running when its timer fires
// (it uses next to no CPU, far from the real-time throttle), so such a
// delay is the CPU not running at all.
const (
	stallTick = 5 * time.Millisecond
	stallMin  = 20 * time.Millisecond
)

// stallWatch counts stalls of any CPU since it started.
type stallWatch struct {
	n  atomic.Int64
	ok atomic.Bool // every watcher runs pinned and real-time
}

// startStallWatch starts one watcher per CPU; they run until the program
// ends. Without the rights for a real-time thread (not root), count
// reports that it cannot tell.
func startStallWatch() *stallWatch {
	sw := &stallWatch{}
	ncpu := runtime.NumCPU()
	ready := make(chan bool, ncpu)
	for cpu := range ncpu {
		go sw.watch(cpu, ready)
	}
	ok := true
	for range ncpu {
		ok = <-ready && ok
	}
	sw.ok.Store(ok)
	return sw
}

func (sw *stallWatch) watch(cpu int, ready chan<- bool) {
	runtime.LockOSThread() // for good: the thread is pinned and real-time
	var set unix.CPUSet
	set.Set(cpu)
	err := unix.SchedSetaffinity(0, &set)
	if err == nil {
		err = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 50}, 0)
	}
	ready <- err == nil
	if err != nil {
		return
	}
	ts := unix.NsecToTimespec(int64(stallTick))
	for {
		t0 := time.Now()
		unix.Nanosleep(&ts, nil)
		if late := time.Since(t0) - stallTick; late >= stallMin {
			sw.n.Add(1)
		}
	}
}

// count is the number of stalls so far, or -1 when the watch could not
// run.
func (sw *stallWatch) count() int64 {
	if sw == nil || !sw.ok.Load() {
		return -1
	}
	return sw.n.Load()
}
