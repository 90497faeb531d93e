package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFile: any berth.json either configures berth or is refused
// with an error naming the file; it never panics, and never sets a flag
// reserved to the command line.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		`{"min_workers": 2, "env": {"A": "1"}}`,
		`{"listen": ["127.0.0.1:1", "unix:/x"], "static": "off", "max_body_size": "1M"}`,
		`{"user": "root"}`, `{"spawner": "exec"}`, `[]`, `{"workers": {"a": 1}}`, `{"port": 1e99}`, `{"node_arg": [true, 1.5, "x"]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		dir := t.TempDir()
		path := filepath.Join(dir, configFile)
		if err := os.WriteFile(path, []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := parseServe([]string{dir}, io.Discard)
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.HasPrefix(err.Error(), "--") && !strings.Contains(err.Error(), "worker") && !strings.Contains(err.Error(), "want") {
				t.Fatalf("error names neither the file nor the setting: %v", err)
			}
			return
		}
		if c.User != "" || c.Group != "" || c.Spawner != "auto" || c.NoSandbox || c.MemoryMax != "" || c.CPUQuota != "" || c.TasksMax != 0 {
			t.Fatalf("%s set a command-line-only setting: %+v", js, c)
		}
	})
}
