package logging

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// AppOutput writes what berth's workers print, one record per write the
// app made (as far as one read of its pipe shows it): a stack trace that
// the app wrote at once stays one record.
//
// On the journal (see IsJournalStream) each record is one entry, sent
// through the native protocol, whose MESSAGE keeps its newlines:
//
//	MESSAGE            the text, without its last newline
//	PRIORITY           6 (info)
//	SYSLOG_IDENTIFIER  APP/WORKER
//	APP, WORKER        the app and the worker (w1, …)
//	STREAM             stdout or stderr
//
// Otherwise it is text: a first line with the time, the app, the worker
// and the stream, the record's lines after it each starting with "  | ":
//
//	2026-11-28T09:41:07.123Z hello w1 stderr: Error: boom
//	  |     at f (/srv/hello/app.js:3:9)
//
// (the app's own indentation kept after the "  | "). A record is one
// Write to w, so berth's own log lines never split it.
type AppOutput struct {
	w    io.Writer
	now  func() time.Time
	send func(message string, priority journal.Priority, fields map[string]string) error // nil: text
	note *fallbackNote
	mu   sync.Mutex // serializes writes to w
}

// NewAppOutput returns the writer of the workers' output on w (berth's
// stderr); getenv reads JOURNAL_STREAM as NewHandler does.
func NewAppOutput(w io.Writer, getenv func(string) string) *AppOutput {
	o := &AppOutput{w: w, now: time.Now, note: &fallbackNote{w: w}}
	if IsJournalStream(w, getenv) {
		o.send = journal.Send
	}
	return o
}

// For returns the writer for one stream ("stdout" or "stderr") of a
// worker: the spawner's ExecConfig.OutputFor.
func (o *AppOutput) For(app, worker, stream string) io.Writer {
	return &appStream{o: o, app: app, worker: worker, stream: stream}
}

type appStream struct {
	o                   *AppOutput
	app, worker, stream string
}

func (s *appStream) Write(p []byte) (int, error) {
	text := strings.TrimRight(string(bytes.TrimSuffix(p, []byte("\n"))), "\r")
	s.o.record(s.app, s.worker, s.stream, text)
	return len(p), nil
}

// record writes one record.
func (o *AppOutput) record(app, worker, stream, text string) {
	if o.send != nil {
		err := o.send(text, journal.PriInfo, map[string]string{
			"SYSLOG_IDENTIFIER": app + "/" + worker,
			"APP":               app,
			"WORKER":            worker,
			"STREAM":            stream,
		})
		if err == nil {
			o.note.failed.Store(false)
			return
		}
		if !o.note.failed.Swap(true) {
			o.note.mu.Lock()
			fmt.Fprintf(o.note.w, "berth: cannot send to the journal (%v); writing the workers' output as text to stderr until it answers again\n", err)
			o.note.mu.Unlock()
		}
	}
	var b strings.Builder
	b.WriteString(o.now().Format("2006-01-02T15:04:05.000Z07:00"))
	fmt.Fprintf(&b, " %s %s %s: ", app, worker, stream)
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteString("  | ")
		}
		b.WriteString(strings.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
	o.mu.Lock()
	io.WriteString(o.w, b.String())
	o.mu.Unlock()
}
