package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
)

// Identifier is the SYSLOG_IDENTIFIER of berth's journal entries.
const Identifier = "berth"

// New returns berth's logger writing to w (berth passes os.Stderr) at
// level and above. getenv reads the environment (os.Getenv); see NewHandler.
func New(w io.Writer, level slog.Leveler, getenv func(string) string) *slog.Logger {
	return slog.New(NewHandler(w, level, getenv))
}

// NewHandler returns berth's slog handler. It writes slog's text format to
// w, unless w is the journal: JOURNAL_STREAM (as getenv reads it) names w's
// device and inode, which systemd sets when a service's stderr is connected
// to journald. Then it sends each record through the journal's native
// protocol with structured fields (see the package doc), and falls back to
// text on w, saying so once, while the journal socket cannot be reached.
func NewHandler(w io.Writer, level slog.Leveler, getenv func(string) string) slog.Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	text := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	if !IsJournalStream(w, getenv) {
		return &dedup{inner: text}
	}
	return &dedup{inner: &journalHandler{
		level:    level,
		send:     journal.Send,
		fallback: text,
		note:     &fallbackNote{w: w},
	}}
}

// IsJournalStream reports whether w is the stream systemd connected to
// journald for this process: an *os.File (or anything with a Stat method
// returning a syscall.Stat_t) whose device and inode are the ones
// JOURNAL_STREAM ("DEV:INO") names.
func IsJournalStream(w io.Writer, getenv func(string) string) bool {
	dev, ino, ok := strings.Cut(getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	wantDev, err1 := strconv.ParseUint(dev, 10, 64)
	wantIno, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == wantDev && st.Ino == wantIno
}

// journalHandler sends records to journald.
type journalHandler struct {
	level    slog.Leveler
	send     func(message string, priority journal.Priority, fields map[string]string) error
	fallback slog.Handler // text on the original writer, with the same attrs and groups
	note     *fallbackNote

	attrs  []groupedAttr // from WithAttrs, with the group prefix they were added under
	prefix string        // open groups, "a.b." form
}

type groupedAttr struct {
	prefix string
	attr   slog.Attr
}

// fallbackNote writes, once per failure spell, that the journal is gone.
type fallbackNote struct {
	mu     sync.Mutex // serializes writes to w
	w      io.Writer
	failed atomic.Bool // the last send failed
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	msg, fields := h.entry(r)
	err := h.send(msg, Priority(r.Level), fields)
	if err == nil {
		h.note.failed.Store(false)
		return nil
	}
	if !h.note.failed.Swap(true) {
		h.note.mu.Lock()
		fmt.Fprintf(h.note.w, "berth: cannot send to the journal (%v); logging text to stderr until it answers again\n", err)
		h.note.mu.Unlock()
	}
	return h.fallback.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = append([]groupedAttr(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = append(h2.attrs, groupedAttr{h.prefix, a})
	}
	h2.fallback = h.fallback.WithAttrs(as)
	return &h2
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	h2.fallback = h.fallback.WithGroup(name)
	return &h2
}

// entry builds the journal entry of r: its MESSAGE (the record's message
// followed by its attributes as key=value, so that plain `journalctl` shows
// them) and its other fields.
func (h *journalHandler) entry(r slog.Record) (string, map[string]string) {
	fields := map[string]string{"SYSLOG_IDENTIFIER": Identifier}
	var msg strings.Builder
	msg.WriteString(r.Message)
	add := func(prefix string, a slog.Attr) { addAttr(&msg, fields, prefix, a) }
	for _, ga := range h.attrs {
		add(ga.prefix, ga.attr)
	}
	r.Attrs(func(a slog.Attr) bool {
		add(h.prefix, a)
		return true
	})
	return msg.String(), fields
}

// addAttr appends a (under the group prefix "g.h.") to the message text and
// to the journal fields, recursing into groups.
func addAttr(msg *strings.Builder, fields map[string]string, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			addAttr(msg, fields, p, g)
		}
		return
	}
	key := prefix + a.Key
	val := a.Value.String()
	msg.WriteByte(' ')
	msg.WriteString(key)
	msg.WriteByte('=')
	msg.WriteString(quote(val))

	name := FieldName(key)
	fields[name] = val
	switch name {
	case "UNIT":
		// journalctl -u UNIT also shows messages about UNIT that a root
		// process tagged with OBJECT_SYSTEMD_UNIT: berth's lines about a
		// worker appear in that worker's log.
		fields["OBJECT_SYSTEMD_UNIT"] = val
	case "PID":
		if a.Value.Kind() == slog.KindInt64 || a.Value.Kind() == slog.KindUint64 {
			fields["OBJECT_PID"] = val
		}
	}
}

// quote returns s as a key=value text value: bare when that is unambiguous,
// else Go-quoted, as slog's text handler does.
func quote(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '=' || r == '"' || r == 0x7f || r == 0xfffd
	}) {
		return strconv.Quote(s)
	}
	return s
}

// reserved are journal fields that an attribute may not set: those the
// handler sets itself and those journald or journalctl give a meaning.
var reserved = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"SYSLOG_FACILITY": true, "SYSLOG_PID": true, "SYSLOG_TIMESTAMP": true, "SYSLOG_RAW": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true, "ERRNO": true,
	"INVOCATION_ID": true, "USER_INVOCATION_ID": true, "USER_UNIT": true,
	"OBJECT_SYSTEMD_UNIT": true, "OBJECT_PID": true, "COREDUMP_UNIT": true,
	"DOCUMENTATION": true, "TID": true,
}

// FieldName maps an attribute key (with its group prefix, "a.b") to a
// journal field name: upper case, every character other than A-Z, 0-9 and
// '_' turned into '_' ("http.status" gives HTTP_STATUS), an "X" in front of
// a leading digit or '_', and "ATTR_" in front of a field the journal
// reserves (an attribute "message" gives ATTR_MESSAGE).
func FieldName(key string) string {
	b := []byte(strings.ToUpper(key))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	name := string(b)
	if name == "" || name[0] == '_' || name[0] >= '0' && name[0] <= '9' {
		name = "X" + name
	}
	if reserved[name] {
		name = "ATTR_" + name
	}
	return name
}

// Priority maps a slog level to a syslog priority: below Info is debug,
// below Warn info, below Error warning, the rest err.
func Priority(l slog.Level) journal.Priority {
	switch {
	case l < slog.LevelInfo:
		return journal.PriDebug
	case l < slog.LevelWarn:
		return journal.PriInfo
	case l < slog.LevelError:
		return journal.PriWarning
	default:
		return journal.PriErr
	}
}
