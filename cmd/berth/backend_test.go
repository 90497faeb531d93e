package main

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{in: "", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512K", want: 512 << 10},
		{in: "256M", want: 256 << 20},
		{in: "2g", want: 2 << 30},
		{in: "1T", want: 1 << 40},
		{in: "0", bad: true},
		{in: "M", bad: true},
		{in: "12X", bad: true},
		{in: "-5M", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseBytes(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseBytes(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParsePercent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		bad  bool
	}{
		{in: "", want: 0},
		{in: "50%", want: 50},
		{in: "200", want: 200},
		{in: "0%", bad: true},
		{in: "half", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parsePercent(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parsePercent(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parsePercent(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestUnderSystemd(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"shell", map[string]string{}, false},
		{"service", map[string]string{"INVOCATION_ID": "0a1b"}, true},
		{"notify only", map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := underSystemd(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("underSystemd = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestConfigAdminOnly: berth.json, the app owner's file, cannot choose the
// workers' user, limits, sandbox or back end.
func TestConfigAdminOnly(t *testing.T) {
	for key, value := range map[string]string{
		"user": `"root"`, "group": `"root"`, "memory_max": `"64G"`, "cpu_quota": `"800%"`,
		"tasks_max": `100000`, "no_sandbox": `true`, "spawner": `"exec"`, "log_file": `"/var/log/berth.log"`,
	} {
		t.Run(key, func(t *testing.T) {
			dir := writeApp(t, `{"`+key+`": `+value+`}`)
			_, err := parseServe([]string{dir}, testWriter{t})
			if err == nil || !strings.Contains(err.Error(), "only be given on berth's command line") {
				t.Errorf("berth.json with %s: %s: err = %v, want it refused", key, value, err)
			}
			// The same on the command line is fine.
			flag := "--" + strings.ReplaceAll(key, "_", "-")
			args := []string{writeApp(t, ""), flag + "=" + strings.Trim(value, `"`)}
			if _, err := parseServe(args, testWriter{t}); err != nil {
				t.Errorf("%v: %v", args, err)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
