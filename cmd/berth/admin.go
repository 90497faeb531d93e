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
