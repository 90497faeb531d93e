package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// End-to-end tests of real Node apps and frameworks, installed from npm into
// spawner/loader/testdata/apps by spawner/loader/testdata/install.sh, each
// served by berth with 2 workers and reached through berth's public port.

// testAppsDir holds the npm test apps, one directory each.
const testAppsDir = "../../spawner/loader/testdata/apps"

// testAppsInstall runs install.sh once per test binary.
var testAppsInstall struct {
	once sync.Once
	err  error
}

// needTestApps installs the test apps' npm packages (a no-op when they are
// installed already, as .ci/run does) or skips the test without them.
func needTestApps(t *testing.T) {
	t.Helper()
	testenv.NeedCommand(t, "node")
	testenv.NeedCommand(t, "npm")
	testAppsInstall.once.Do(func() {
		out, err := exec.Command("sh", "../../spawner/loader/testdata/install.sh").CombinedOutput()
		if err != nil {
			testAppsInstall.err = fmt.Errorf("spawner/loader/testdata/install.sh: %w: %s", err, out)
		}
	})
	if testAppsInstall.err != nil {
		testenv.Need(t, false, "npm packages of the test apps: "+testAppsInstall.err.Error())
	}
}

// appReply is what every test app answers on /.
type appReply struct {
	App         string `json:"app"`
	Pid         int    `json:"pid"`
	Greeting    string `json:"greeting"`    // esm
	MetricsPort int    `json:"metricsPort"` // explicit
	ProxiedBy   string `json:"proxiedBy"`   // proxy
}

// serveTestApp serves the test app in dir with 2 workers and waits until
// both are ready.
func serveTestApp(t *testing.T, dir string, args ...string) *berthProc {
	t.Helper()
	needTestApps(t)
	b := startBerth(t, filepath.Join(testAppsDir, dir), append([]string{"--workers", "2"}, args...)...)
	b.WaitForN(`msg="worker ready"`, 2, 30*time.Second)
	return b
}

// getAppReply does a GET on url and decodes the app's JSON answer.
func getAppReply(t *testing.T, url string) appReply {
	t.Helper()
	code, body := get(t, nil, url)
	var r appReply
	if err := json.Unmarshal([]byte(body), &r); code != 200 || err != nil {
		t.Fatalf("GET %s: %d %q (%v)", url, code, body, err)
	}
	return r
}

// repliesFromBothWorkers sends requests to berth, several at once, until
// two worker pids answered, and returns the replies.
func repliesFromBothWorkers(t *testing.T, b *berthProc, wantApp string) []appReply {
	t.Helper()
	var replies []appReply
	pids := fromWorkers(t, b.URL+"/", 2, func(body string) string {
		var r appReply
		if json.Unmarshal([]byte(body), &r) != nil || r.App != wantApp || r.Pid == 0 {
			return "" // not an answer of wantApp
		}
		replies = append(replies, r)
		return strconv.Itoa(r.Pid)
	})
	if len(pids) != 2 {
		t.Fatalf("requests at once reached %d worker pids, want 2", len(pids))
	}
	return replies
}

func TestNodeFrameworks(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		args []string
		app  string // the "app" field of the answer
		// check, if set, checks the replies further.
		check func(t *testing.T, b *berthProc, replies []appReply)
	}{
		{name: "express 5", dir: "express5", app: "express5"},
		{name: "express-generator bin/www", dir: "www", args: []string{"--startup-file", "bin/www"}, app: "www",
			check: func(t *testing.T, b *berthProc, _ []appReply) {
				b.WaitFor(`www listening on pipe /`, 5*time.Second)
			}},
		{name: "koa", dir: "koa", app: "koa"},
		{name: "fastify 5 listen({port:3000})", dir: "fastify", app: "fastify"},
		{name: "hapi server({port:3000})", dir: "hapi", app: "hapi"},
		{name: "ESM with top-level await", dir: "esm", args: []string{"--startup-file", "app.mjs"}, app: "esm",
			check: func(t *testing.T, _ *berthProc, replies []appReply) {
				if g := replies[0].Greeting; g != "top-level await done" {
					t.Errorf("greeting %q, want the value awaited at the top level", g)
				}
			}},
		{name: "explicit selection (Passenger style)", dir: "explicit", app: "explicit", check: checkMetricsServers},
		{name: "hapi explicit selection (berth style)", dir: "hapi-explicit", app: "hapi-explicit", check: checkMetricsServers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := serveTestApp(t, tt.dir, tt.args...)
			replies := repliesFromBothWorkers(t, b, tt.app)
			if tt.check != nil {
				tt.check(t, b, replies)
			}
		})
	}
}

// checkMetricsServers checks that the metrics server each worker opened
// before selecting its served server explicitly was not served, and still
// answers on its own port.
func checkMetricsServers(t *testing.T, _ *berthProc, replies []appReply) {
	t.Helper()
	for _, r := range replies {
		code, body := get(t, nil, fmt.Sprintf("http://127.0.0.1:%d/", r.MetricsPort))
		if want := fmt.Sprintf("metrics of %d", r.Pid); code != 200 || body != want {
			t.Errorf("metrics server of pid %d: %d %q, want %q", r.Pid, code, body, want)
		}
	}
}

func TestHTTPSAppServedThroughBerth(t *testing.T) {
	certPath, keyPath := testenv.WriteCert(t, t.TempDir())
	b := serveTestApp(t, "https", "--env", "TLS_CERT="+certPath, "--env", "TLS_KEY="+keyPath)
	repliesFromBothWorkers(t, b, "https")
}

func TestSocketIOWebsocketThroughBerth(t *testing.T) {
	b := serveTestApp(t, "socketio")
	repliesFromBothWorkers(t, b, "socketio")
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "node", filepath.Join(testAppsDir, "socketio", "client.js"), b.URL).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("socket.io client through berth: %v\n%s", err, out)
		}
		var got struct {
			Transport string `json:"transport"`
			Echo      string `json:"echo"`
			Pid       int    `json:"pid"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("socket.io client printed %q: %v", out, err)
		}
		if got.Transport != "websocket" || got.Echo != "hello over websocket" || got.Pid == 0 {
			t.Errorf("round trip %d: %+v, want the echo over websocket from a worker", i, got)
		}
	}
}

func TestHTTPProxyAppWithTwoServers(t *testing.T) {
	targetPort := testenv.FreePort(t)
	b := serveTestApp(t, "proxy", "--env", fmt.Sprintf("TARGET_PORT=%d", targetPort))
	// Every answer comes from the target server, which only one worker
	// could bind; both workers' proxies (the served servers) forward to it.
	targets := map[int]bool{}
	proxies := fromWorkers(t, b.URL+"/", 2, func(body string) string {
		var r appReply
		if json.Unmarshal([]byte(body), &r) != nil || r.App != "proxy-target" || r.ProxiedBy == "" {
			return "" // not the target's answer through a proxy
		}
		targets[r.Pid] = true
		return r.ProxiedBy
	})
	if len(proxies) != 2 || len(targets) != 1 {
		t.Errorf("answers proxied by %d workers from %d targets, want 2 proxies and 1 target", len(proxies), len(targets))
	}
	// The second port still works directly.
	r := getAppReply(t, fmt.Sprintf("http://127.0.0.1:%d/", targetPort))
	if r.App != "proxy-target" || r.ProxiedBy != "" {
		t.Errorf("target port answered %+v, want the target without proxy", r)
	}
	// The worker that found the port taken said so and kept running.
	b.WaitFor(`failed, the worker keeps running without it`, 5*time.Second)
}

// TestSocketIOPollingWithStickySessions: socket.io's default transports
// (long polling, then the upgrade to websocket) need every request of a
// session on one worker; with 2 workers and --sticky-sessions they work.
func TestSocketIOPollingWithStickySessions(t *testing.T) {
	b := serveTestApp(t, "socketio", "--sticky-sessions")
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "node", filepath.Join(testAppsDir, "socketio", "polling-client.js"), b.URL).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("socket.io polling client through berth: %v\n%s", err, out)
		}
		type reply struct {
			Transport string `json:"transport"`
			Echo      string `json:"echo"`
			Pid       int    `json:"pid"`
		}
		var got struct {
			Opened            string
			Polling, Upgraded reply
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("socket.io client printed %q: %v", out, err)
		}
		if got.Opened != "polling" || got.Polling.Echo != "hello over polling" ||
			got.Upgraded.Transport != "websocket" || got.Upgraded.Pid != got.Polling.Pid || got.Polling.Pid == 0 {
			t.Errorf("session %d: %+v, want a session opened over polling, upgraded to websocket, on one worker", i, got)
		}
	}
}
