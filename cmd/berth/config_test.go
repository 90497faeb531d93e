package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeApp(t *testing.T, berthJSON string) string {
	t.Helper()
	dir := t.TempDir()
	if berthJSON != "" {
		if err := os.WriteFile(filepath.Join(dir, "berth.json"), []byte(berthJSON), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestConfigFileAndFlags(t *testing.T) {
	dir := writeApp(t, `{"min_workers": 2, "max_workers": 4, "spawn_timeout": "5s", "listen": ["127.0.0.1:8080", "unix:/run/x.sock"], "env": {"A": "1", "B": "two"}, "port": 8000}`)
	c, err := parseServe([]string{dir, "--port", "9000"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.MinWorkers != 2 || c.MaxWorkers != 4 || c.SpawnTimeout != 5*time.Second {
		t.Errorf("from berth.json: min %d max %d spawn %s", c.MinWorkers, c.MaxWorkers, c.SpawnTimeout)
	}
	if c.Port != 9000 {
		t.Errorf("port %d: the flag must win over berth.json", c.Port)
	}
	if strings.Join(c.Listen, " ") != "127.0.0.1:8080 unix:/run/x.sock" || strings.Join(c.Env, " ") != "A=1 B=two" {
		t.Errorf("lists: listen %q env %q", c.Listen, c.Env)
	}
	if c.Name != filepath.Base(dir) {
		t.Errorf("name %q, want the directory's name", c.Name)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		want       []string
	}{
		{name: "unknown key", file: `{"wrokers": 2}`, want: []string{`unknown key "wrokers"`, "berth.json", "workers"}},
		{name: "bad value", file: `{"spawn_timeout": "soon"}`, want: []string{`key "spawn_timeout"`, `"soon"`, "berth.json"}},
		{name: "bad type", file: `{"workers": {"n": 2}}`, want: []string{`key "workers"`}},
		{name: "not json", file: `workers=2`, want: []string{"berth.json", "not a JSON object"}},
		{name: "min above max", args: []string{"--min-workers", "5", "--max-workers", "2"}, want: []string{"--min-workers 5 is more than --max-workers 2"}},
		{name: "bad spawner", args: []string{"--spawner", "docker"}, want: []string{`--spawner "docker"`}},
		{name: "bad log level", file: `{"log_level": "loud"}`, want: []string{`--log-level "loud"`}},
		{name: "bad env", args: []string{"--env", "NOVALUE"}, want: []string{`--env "NOVALUE"`}},
		{name: "relative buffer dir", args: []string{"--buffer-dir", "tmp"}, want: []string{`--buffer-dir "tmp"`, "absolute"}},
		{name: "buffer dir from the file", file: `{"buffer_dir": "/etc"}`, want: []string{`key "buffer_dir"`, "command line"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeApp(t, tc.file)
			var stderr bytes.Buffer
			code := run(append([]string{"serve", dir}, tc.args...), &bytes.Buffer{}, &stderr)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("error %q does not mention %q", stderr.String(), w)
				}
			}
		})
	}
}

// TestBufferDirUnwritable: a buffer directory berth cannot make files in
// stops berth at start, naming the directory and what to do.
func TestBufferDirUnwritable(t *testing.T) {
	dir := edgeApp(t, nil)
	missing := filepath.Join(t.TempDir(), "gone")
	var stderr bytes.Buffer
	code := run([]string{"serve", dir, "--buffer-dir", missing, "--listen", "127.0.0.1:0"}, &bytes.Buffer{}, &stderr)
	if code == 0 {
		t.Fatal("berth served with a buffer directory that does not exist")
	}
	for _, w := range []string{"buffer directory " + missing, "no such file or directory", "--buffer-dir", "--buffering=off"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("error %q does not mention %q", stderr.String(), w)
		}
	}
}

func TestMissingStartupFile(t *testing.T) {
	dir := writeApp(t, "")
	var stderr bytes.Buffer
	if code := run([]string{"serve", dir}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "no startup file") || !strings.Contains(stderr.String(), "--startup-file") {
		t.Errorf("error %q does not say what to do", stderr.String())
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "berth ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"help"}, &out, &out); code != 0 || !strings.Contains(out.String(), "serve") {
		t.Errorf("help: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"frobnicate"}, &out, &out); code != 2 || !strings.Contains(out.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, out.String())
	}
}
