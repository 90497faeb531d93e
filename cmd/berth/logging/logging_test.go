package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// sent is one captured journal entry.
type sent struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

// capture returns a journal handler whose entries land in *got, failing
// while *fail is set, and whose text fallback writes to out.
func capture(got *[]sent, fail *bool, out *bytes.Buffer) *journalHandler {
	return &journalHandler{
		level: slog.LevelDebug,
		send: func(msg string, pri journal.Priority, fields map[string]string) error {
			if *fail {
				return errors.New("dial /run/systemd/journal/socket: no such file or directory")
			}
			*got = append(*got, sent{msg, pri, fields})
			return nil
		},
		fallback: slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}),
		note:     &fallbackNote{w: out},
	}
}

func TestJournalFields(t *testing.T) {
	var got []sent
	var fail bool
	var out bytes.Buffer
	log := slog.New(capture(&got, &fail, &out)).With("app", "myapp")
	log.Warn("worker exited", "worker", "w2", "unit", "berth-myapp-w2.service", "pid", 4242,
		"err", errors.New("exit status 1"), "uptime", 3*time.Second,
		slog.Group("http", "status", 502), "message", "shadowed", "9lives", true)
	log.WithGroup("req").With("id", "r1").Debug("queued", "path", "/a b")

	if len(got) != 2 {
		t.Fatalf("sent %d entries, want 2 (text fallback got %q)", len(got), out.String())
	}
	if out.Len() != 0 {
		t.Errorf("text written while the journal answers: %q", out.String())
	}
	e := got[0]
	if want := `worker exited app=myapp worker=w2 unit=berth-myapp-w2.service pid=4242 err="exit status 1" uptime=3s http.status=502 message=shadowed 9lives=true`; e.msg != want {
		t.Errorf("MESSAGE = %q\nwant      %q", e.msg, want)
	}
	if e.pri != journal.PriWarning {
		t.Errorf("PRIORITY = %d, want %d", e.pri, journal.PriWarning)
	}
	want := map[string]string{
		"SYSLOG_IDENTIFIER":   "berth",
		"APP":                 "myapp",
		"WORKER":              "w2",
		"UNIT":                "berth-myapp-w2.service",
		"OBJECT_SYSTEMD_UNIT": "berth-myapp-w2.service",
		"PID":                 "4242",
		"OBJECT_PID":          "4242",
		"ERR":                 "exit status 1",
		"UPTIME":              "3s",
		"HTTP_STATUS":         "502",
		"ATTR_MESSAGE":        "shadowed",
		"X9LIVES":             "true",
	}
	if fmt.Sprint(e.fields) != fmt.Sprint(want) {
		t.Errorf("fields = %v\nwant     %v", e.fields, want)
	}

	e = got[1]
	if e.msg != `queued app=myapp req.id=r1 req.path="/a b"` || e.pri != journal.PriDebug {
		t.Errorf("grouped entry = %q priority %d", e.msg, e.pri)
	}
	if e.fields["REQ_ID"] != "r1" || e.fields["REQ_PATH"] != "/a b" || e.fields["APP"] != "myapp" {
		t.Errorf("grouped fields = %v", e.fields)
	}
}

func TestJournalFallback(t *testing.T) {
	var got []sent
	fail := true
	var out bytes.Buffer
	log := slog.New(capture(&got, &fail, &out))
	log.Info("one", "worker", "w1")
	log.Error("two")
	text := out.String()
	if n := strings.Count(text, "cannot send to the journal"); n != 1 {
		t.Errorf("the journal failure is noted %d times, want once:\n%s", n, text)
	}
	for _, want := range []string{"level=INFO msg=one worker=w1", "level=ERROR msg=two"} {
		if !strings.Contains(text, want) {
			t.Errorf("fallback text lacks %q:\n%s", want, text)
		}
	}
	fail = false
	log.Info("three")
	if len(got) != 1 || got[0].msg != "three" {
		t.Errorf("after the journal came back: sent %v", got)
	}
	fail = true
	out.Reset()
	log.Info("four")
	if !strings.Contains(out.String(), "cannot send to the journal") {
		t.Errorf("a second failure spell is not noted:\n%s", out.String())
	}
}

func TestPriority(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  journal.Priority
	}{
		{slog.LevelDebug, journal.PriDebug},
		{slog.LevelDebug + 2, journal.PriDebug},
		{slog.LevelInfo, journal.PriInfo},
		{slog.LevelWarn, journal.PriWarning},
		{slog.LevelError, journal.PriErr},
		{slog.LevelError + 4, journal.PriErr},
	}
	for _, tt := range tests {
		if got := Priority(tt.level); got != tt.want {
			t.Errorf("Priority(%v) = %d, want %d", tt.level, got, tt.want)
		}
	}
}

func TestFieldName(t *testing.T) {
	tests := map[string]string{
		"app":         "APP",
		"old_pid":     "OLD_PID",
		"http.status": "HTTP_STATUS",
		"retry-in":    "RETRY_IN",
		"_x":          "X_X",
		"1st":         "X1ST",
		"":            "X",
		"priority":    "ATTR_PRIORITY",
		"café":        "CAF__",
	}
	for key, want := range tests {
		if got := FieldName(key); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestIsJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "JOURNAL_STREAM" {
				return v
			}
			return ""
		}
	}
	match := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	tests := []struct {
		name   string
		w      any
		stream string
		want   bool
	}{
		{"matching file", f, match, true},
		{"other inode", f, fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"unset", f, "", false},
		{"garbage", f, "x:y", false},
		{"not a file", &bytes.Buffer{}, match, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w.(interface{ Write([]byte) (int, error) })
			if got := IsJournalStream(w, env(tt.stream)); got != tt.want {
				t.Errorf("IsJournalStream = %v, want %v", got, tt.want)
			}
		})
	}
	if _, ok := NewHandler(f, slog.LevelInfo, env(match)).(*dedup).inner.(*journalHandler); !ok {
		t.Error("NewHandler on the journal stream did not pick the journal handler")
	}
	if _, ok := NewHandler(f, slog.LevelInfo, env("")).(*dedup).inner.(*slog.TextHandler); !ok {
		t.Error("NewHandler off the journal did not pick the text handler")
	}
}

func TestLevel(t *testing.T) {
	var got []sent
	var fail bool
	var out bytes.Buffer
	h := capture(&got, &fail, &out)
	h.level = slog.LevelWarn
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("Enabled does not follow the level")
	}
}
