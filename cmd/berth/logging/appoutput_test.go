package logging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

const stackTrace = `Error: boom in handler
    at Server.<anonymous> (/srv/shop/app.js:5:19)
    at Server.emit (node:events:519:28)
`

func fixedClock() time.Time { return time.Date(2026, 11, 28, 9, 41, 7, 123e6, time.UTC) }

// TestAppOutputText: standalone, a write of several lines is one record:
// one first line with time, app, worker and stream, the rest marked as
// its continuation, in one Write.
func TestAppOutputText(t *testing.T) {
	var w countingWriter
	o := &AppOutput{w: &w, now: fixedClock, note: &fallbackNote{w: &w}}
	io.WriteString(o.For("shop", "w1", "stderr"), stackTrace)
	io.WriteString(o.For("shop", "w2", "stdout"), "listening\r\n")
	want := "2026-11-28T09:41:07.123Z shop w1 stderr: Error: boom in handler\n" +
		"  |     at Server.<anonymous> (/srv/shop/app.js:5:19)\n" +
		"  |     at Server.emit (node:events:519:28)\n" +
		"2026-11-28T09:41:07.123Z shop w2 stdout: listening\n"
	if w.buf.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", w.buf.String(), want)
	}
	if w.writes != 2 {
		t.Errorf("%d writes for 2 records: a record must be one write", w.writes)
	}
}

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) { c.writes++; return c.buf.Write(p) }

// TestAppOutputJournal: on the journal, a write of several lines is one
// entry whose MESSAGE keeps the newlines, with the worker and the stream.
func TestAppOutputJournal(t *testing.T) {
	var got []sent
	var text bytes.Buffer
	fail := false
	o := &AppOutput{w: &text, now: fixedClock, note: &fallbackNote{w: &text},
		send: func(msg string, pri journal.Priority, fields map[string]string) error {
			if fail {
				return errors.New("journal gone")
			}
			got = append(got, sent{msg, pri, fields})
			return nil
		}}
	io.WriteString(o.For("shop", "w1", "stderr"), stackTrace)
	if len(got) != 1 {
		t.Fatalf("%d journal entries for one write, want 1", len(got))
	}
	if want := strings.TrimSuffix(stackTrace, "\n"); got[0].msg != want {
		t.Errorf("MESSAGE %q, want %q", got[0].msg, want)
	}
	want := map[string]string{"SYSLOG_IDENTIFIER": "shop/w1", "APP": "shop", "WORKER": "w1", "STREAM": "stderr"}
	if fmt.Sprint(got[0].fields) != fmt.Sprint(want) || got[0].pri != journal.PriInfo {
		t.Errorf("fields %v priority %d, want %v and info", got[0].fields, got[0].pri, want)
	}
	if text.Len() != 0 {
		t.Errorf("text written while the journal answers: %q", text.String())
	}
	fail = true
	io.WriteString(o.For("shop", "w1", "stdout"), "one\ntwo\n")
	if !strings.Contains(text.String(), "cannot send to the journal") || !strings.Contains(text.String(), "shop w1 stdout: one\n  | two\n") {
		t.Errorf("fallback text: %q", text.String())
	}
}

// TestDedup: an attribute the logger already carries with the same value
// is not repeated; a different value, or one inside a group, is kept.
func TestDedup(t *testing.T) {
	var out bytes.Buffer
	h := &dedup{inner: slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})}
	log := slog.New(h).With("app", "shop")
	log.Debug("worker started", "app", "shop", "worker", "w1")
	log.Info("odd", "app", "blog")
	log.WithGroup("g").Info("grouped", "app", "shop")
	want := "level=DEBUG msg=\"worker started\" app=shop worker=w1\n" +
		"level=INFO msg=odd app=shop app=blog\n" +
		"level=INFO msg=grouped app=shop g.app=shop\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
