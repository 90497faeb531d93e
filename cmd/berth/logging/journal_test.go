package logging

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"berth/packaging/systemdtest"
)

var machine systemdtest.Shared

func TestMain(m *testing.M) {
	if os.Getenv("LOGGING_TEST_HELPER") == "1" {
		helper()
		return
	}
	code := m.Run()
	if err := machine.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// helper runs as a systemd service in the container: it logs the way
// berth does, to its stderr, which systemd connected to the journal.
func helper() {
	log := New(os.Stderr, slog.LevelDebug, os.Getenv).With("app", "myapp")
	log.Info("worker ready", "worker", "w1", "unit", "berth-myapp-w1.service", "pid", 4242, slog.Group("http", "status", 502))
	log.Debug("debug line")
	// A worker's stack trace, written at once: one journal entry.
	io.WriteString(NewAppOutput(os.Stderr, os.Getenv).For("myapp", "w1", "stderr"), stackTrace)
	fmt.Println("helper: journal handler:", IsJournalStream(os.Stderr, os.Getenv))
}

// TestJournalOnSystemd runs a service that logs through New and checks
// the fields journalctl -o json shows.
func TestJournalOnSystemd(t *testing.T) {
	m := machine.Machine(t)
	ctx := t.Context()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CopyFile(ctx, self, "/usr/local/bin/logging-helper"); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "systemd-run", "--wait", "--unit=logging-helper", "--setenv=LOGGING_TEST_HELPER=1", "/usr/local/bin/logging-helper")
	if _, err := m.WaitJournal(ctx, "helper: journal handler: true", "-u", "logging-helper.service"); err != nil {
		t.Fatal(err)
	}
	// The debug line is sent last, on the same socket.
	out, err := m.WaitJournal(ctx, "debug line", "-u", "logging-helper.service", "-t", "berth", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("journalctl -o json line %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	if len(entries) != 2 {
		t.Fatalf("%d entries from berth, want 2 (info and debug):\n%s", len(entries), out)
	}
	want := map[string]string{
		"MESSAGE":             "worker ready app=myapp worker=w1 unit=berth-myapp-w1.service pid=4242 http.status=502",
		"PRIORITY":            "6",
		"SYSLOG_IDENTIFIER":   "berth",
		"APP":                 "myapp",
		"WORKER":              "w1",
		"UNIT":                "berth-myapp-w1.service",
		"PID":                 "4242",
		"HTTP_STATUS":         "502",
		"OBJECT_SYSTEMD_UNIT": "berth-myapp-w1.service",
		"_SYSTEMD_UNIT":       "logging-helper.service",
		"_TRANSPORT":          "journal",
	}
	for k, v := range want {
		if got := fmt.Sprint(entries[0][k]); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := fmt.Sprint(entries[1]["PRIORITY"]); got != "7" {
		t.Errorf("debug line PRIORITY = %s, want 7", got)
	}

	// The worker's stack trace is one entry, its newlines kept.
	out, err = m.WaitJournal(ctx, "boom in handler", "-u", "logging-helper.service", "-t", "myapp/w1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("the stack trace is %d journal entries, want 1:\n%s", len(lines), out)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if got := journalString(e["MESSAGE"]); got != strings.TrimSuffix(stackTrace, "\n") {
		t.Errorf("MESSAGE = %q, want the whole trace", got)
	}
	if e["WORKER"] != "w1" || e["STREAM"] != "stderr" || e["APP"] != "myapp" {
		t.Errorf("fields WORKER=%v STREAM=%v APP=%v", e["WORKER"], e["STREAM"], e["APP"])
	}

	// berth's line about the worker shows in that worker unit's log.
	if _, err := m.WaitJournal(ctx, "worker ready", "-u", "berth-myapp-w1.service"); err != nil {
		t.Errorf("journalctl -u for the worker unit: %v", err)
	}
}

// journalString reads a field of journalctl -o json: a string, or an
// array of byte values when journalctl found it unprintable.
func journalString(v any) string {
	if a, ok := v.([]any); ok {
		b := make([]byte, len(a))
		for i, x := range a {
			f, _ := x.(float64)
			b[i] = byte(f)
		}
		return string(b)
	}
	s, _ := v.(string)
	return s
}
