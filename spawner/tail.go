package spawner

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// lineWriter splits a worker's output into lines, writes each to out with a
// prefix, and keeps the last few lines for error messages.
type lineWriter struct {
	prefix string
	out    io.Writer
	keep   int

	mu      sync.Mutex // protects partial, last, outMu use
	partial []byte
	last    []string
}

func newLineWriter(out io.Writer, prefix string, keep int) *lineWriter {
	return &lineWriter{out: out, prefix: prefix, keep: keep}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.lineLocked(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a very long line without newline
		w.lineLocked(string(w.partial))
		w.partial = nil
	}
	return len(p), nil
}

// Flush emits a last line that had no newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.lineLocked(string(w.partial))
		w.partial = nil
	}
}

func (w *lineWriter) lineLocked(line string) {
	line = strings.TrimRight(line, "\r")
	if w.out != nil {
		io.WriteString(w.out, w.prefix+line+"\n")
	}
	w.last = append(w.last, line)
	if len(w.last) > w.keep {
		w.last = w.last[len(w.last)-w.keep:]
	}
}

// Tail returns the last lines written, oldest first.
func (w *lineWriter) Tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.last...)
}

// quoteTail formats output lines for an error message.
func quoteTail(lines []string) string {
	if len(lines) == 0 {
		return " (it printed nothing)"
	}
	return "; its last output:\n    " + strings.Join(lines, "\n    ")
}
