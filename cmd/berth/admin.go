package main

import (
	"os"
	"sort"
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
	// Starting lists the workers being started; SpawnTimeout bounds them.
	Starting            []startingStatus `json:"starting,omitempty"`
	SpawnTimeoutSeconds float64          `json:"spawn_timeout_seconds"`
	// Recycles counts workers replaced for --max-requests/--memory-limit.
	Recycles int `json:"recycles"`
	// Memory (bytes) and CPUSeconds are berth's own process.
	Memory     uint64       `json:"memory"`
	CPUSeconds float64      `json:"cpu_seconds"`
	Cache      *cacheStatus `json:"cache,omitempty"` // nil with --cache=off
}

type workerStatus struct {
	Name     string    `json:"name"`
	Pid      int       `json:"pid"`
	Inflight int64     `json:"inflight"`
	Served   uint64    `json:"served"`
	Since    time.Time `json:"since"`
	Restarts int       `json:"restarts"`
	// Memory (bytes: the unit's cgroup, or the process tree's RSS) and
	// CPUSeconds the worker used; Recycles and the LastRecycle reason.
	Memory      uint64  `json:"memory"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	Recycles    int     `json:"recycles"`
	LastRecycle string  `json:"last_recycle,omitempty"`
}

// startingStatus is a worker being started: what it waits for, and the
// app's last output (operators only).
type startingStatus struct {
	Name    string    `json:"name"`
	Pid     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Waiting string    `json:"waiting"`
	Output  []string  `json:"output,omitempty"`
}

// buildStatus joins the supervisor's view of the workers with the pool's.
func buildStatus(app string, since time.Time, listen []string, spawnerName string, st spawner.Status, pool *balancer.Pool) appStatus {
	loads := map[string]*balancer.Upstream{}
	for _, u := range pool.Upstreams() {
		loads[u.Name] = u
	}
	s := appStatus{
		App: app, Pid: os.Getpid(), Since: since, Wanted: st.Wanted, Ready: st.Ready,
		Queued: pool.Queued(), Served: pool.Total(), Failing: st.Failing, Spawner: spawnerName, Listen: listen,
		SpawnTimeoutSeconds: st.SpawnTimeout.Seconds(), Recycles: st.Recycles,
	}
	if u, err := spawner.ProcessUsage(os.Getpid()); err == nil {
		s.Memory, s.CPUSeconds = u.Memory, u.CPU.Seconds()
	}
	for _, w := range st.Starting {
		s.Starting = append(s.Starting, startingStatus{Name: w.Name, Pid: w.Pid, Since: w.Since, Waiting: w.Waiting, Output: w.Output})
	}
	for _, w := range st.Workers {
		ws := workerStatus{Name: w.Name, Pid: w.Pid, Since: w.Since, Restarts: w.Restarts,
			Memory: w.Usage.Memory, CPUSeconds: w.Usage.CPU.Seconds(), Recycles: w.Recycles, LastRecycle: w.LastRecycle}
		if u := loads[w.Name]; u != nil {
			ws.Inflight, ws.Served = u.Inflight(), u.Served()
		}
		s.Workers = append(s.Workers, ws)
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].Name < s.Workers[j].Name })
	return s
}
