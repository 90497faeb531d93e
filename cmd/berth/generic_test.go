package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"berth/packaging/testenv"
)

func TestGenericApps(t *testing.T) {
	testenv.NeedCommand(t, "python3")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "socket by LISTEN_FDS", args: []string{"--app-type", "generic", "--command", "python3 -u app.py"}, want: `^python pid (\d+) via fd 3`},
		{name: "socket, ready when it answers", args: []string{"--app-type", "generic", "--command", "python3 -u app.py", "--env", "NO_NOTIFY=1"}, want: `^python pid (\d+) via fd 3`},
		{name: "port in $PORT", args: []string{"--app-type", "generic", "--command", "python3 app.py", "--port-env"}, want: `^port app pid (\d+) on \d+`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := "testdata/pyfd"
			if tc.name == "port in $PORT" {
				dir = "testdata/pyport"
			}
			b := startBerth(t, dir, append([]string{"--workers", "2"}, tc.args...)...)
			b.WaitForN(`msg="worker ready"`, 2, 20*time.Second)
			pids := fromWorkers(t, b.URL+"/", 2, func(body string) string {
				if m := regexp.MustCompile(tc.want).FindStringSubmatch(body); m != nil {
					return m[1]
				}
				return "" // not the answer tc.want describes
			})
			if len(pids) != 2 {
				t.Errorf("requests reached %d workers, want 2", len(pids))
			}
		})
	}
}

func TestNodeRuntimeSettings(t *testing.T) {
	node := testenv.NeedCommand(t, "node")
	b := startBerth(t, "testdata/echo", "--workers", "1", "--node", node,
		"--node-arg=--env-file=test.env", "--node-arg=--max-old-space-size=200", "--env", "GREETING=hi there")
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	code, body := get(t, nil, b.URL+"/")
	var r struct {
		ExecArgv    []string `json:"execArgv"`
		Greeting    string   `json:"greeting"`
		FromEnvFile string   `json:"fromEnvFile"`
	}
	if err := json.Unmarshal([]byte(body), &r); code != 200 || err != nil {
		t.Fatalf("%d %q: %v", code, body, err)
	}
	args := strings.Join(r.ExecArgv, " ")
	if !strings.Contains(args, "--max-old-space-size=200") || r.Greeting != "hi there" || r.FromEnvFile != "loaded by node" {
		t.Errorf("worker saw execArgv %q, GREETING %q, FROM_ENV_FILE %q", args, r.Greeting, r.FromEnvFile)
	}
}
