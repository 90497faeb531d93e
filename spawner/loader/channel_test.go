package loader

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The readiness channel: after READY=1 the loader keeps the connection,
// sends heartbeats while its event loop turns, and runs out-of-band work
// when berth asks for it.

// heartbeatPeriod is the loader's WATCHDOG_MS.
const heartbeatPeriod = 500 * time.Millisecond

// berthEnd is berth's end of a worker's readiness connection. A goroutine
// reads the loader's lines until close stops it.
type berthEnd struct {
	conn  *net.UnixConn
	lines chan berthLine // the lines the loader wrote after READY=1
	done  chan struct{}  // closed when the reader has returned
}

type berthLine struct {
	text string
	at   time.Time // when the test read it
}

func newBerthEnd(conn *net.UnixConn, r *bufio.Reader) *berthEnd {
	b := &berthEnd{conn: conn, lines: make(chan berthLine, 1024), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		defer close(b.lines)
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				return
			}
			b.lines <- berthLine{text: s, at: time.Now()}
		}
	}()
	return b
}

// close closes berth's end and waits for the reader to return.
func (b *berthEnd) close() {
	b.conn.Close()
	<-b.done
}

// next returns the next line equal to want, skipping heartbeats when want
// is not one, and fails the test on any other line, on end of stream, or
// after d.
func (b *berthEnd) next(t *testing.T, want string, d time.Duration) berthLine {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case l, ok := <-b.lines:
			if !ok {
				t.Fatalf("readiness connection ended while waiting for %q", want)
			}
			if l.text == want {
				return l
			}
			if l.text != "WATCHDOG=1\n" {
				t.Fatalf("readiness connection got %q while waiting for %q", l.text, want)
			}
		case <-deadline.C:
			t.Fatalf("no %q on the readiness connection within %v", want, d)
		}
	}
}

func TestHeartbeats(t *testing.T) {
	w := startWorker(t, workerConfig{app: "unit/oob.js", keepReady: true})
	w.waitReady(t)
	b := w.berth

	// While the event loop turns.
	for range 2 {
		b.next(t, "WATCHDOG=1\n", 3*heartbeatPeriod)
	}

	// None while a request blocks the loop for 3 s (6 periods); a
	// heartbeat sent just before it may be read during it.
	var blocked struct{ Start, End int64 }
	decode(t, get(t, w.sock, "/block"), &blocked)
	start, end := time.UnixMilli(blocked.Start), time.UnixMilli(blocked.End)
	during := 0
	for {
		l := b.next(t, "WATCHDOG=1\n", 3*heartbeatPeriod)
		if l.at.After(end) {
			break // they resumed
		}
		if l.at.After(start) {
			during++
		}
	}
	if during > 1 {
		t.Errorf("%d heartbeats while the event loop was blocked, want none", during)
	}

	// berth closing the connection stops them quietly: the worker goes on
	// serving and notes nothing. (Letting two periods pass is the point.)
	b.close()
	time.Sleep(2 * heartbeatPeriod)
	if got := get(t, w.sock, "/"); got != "ok" {
		t.Errorf("after the readiness connection closed, / answered %q, want ok", got)
	}
	if out := w.output.String(); strings.Contains(out, "berth loader") {
		t.Errorf("loader wrote notes after the readiness connection closed:\n%s", out)
	}
}

func TestReadinessConnectionKeepsNoProcessAlive(t *testing.T) {
	w := startWorker(t, workerConfig{app: "unit/oob.js", keepReady: true})
	w.waitReady(t)
	w.berth.next(t, "WATCHDOG=1\n", 3*heartbeatPeriod)
	// Once the app closes its server nothing of its own is left: the
	// heartbeat timer and the readiness connection must not keep node
	// running.
	req, _ := http.NewRequest("GET", "http://worker/close", nil)
	req.Close = true
	c := unixClient(w.sock)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := w.waitExit(t, 5*time.Second); err != nil {
		t.Errorf("worker exit: %v, want status 0", err)
	}
}

func TestOutOfBandWork(t *testing.T) {
	tests := []struct {
		name       string
		listeners  string // oob.js's OOB_LISTENERS
		requests   int    // OOB=1 lines berth sends at once
		wantEvents []string
		wantOutput string
	}{
		{name: "no listeners", requests: 1, wantEvents: []string{}},
		{
			name:       "callback, promise and plain listeners",
			listeners:  "callback,promise,sync",
			requests:   1,
			wantEvents: []string{"callback start", "promise start", "sync", "callback done", "promise done"},
		},
		{
			name:       "a listener that throws",
			listeners:  "throws,sync",
			requests:   1,
			wantEvents: []string{"sync"},
			wantOutput: "oob listener failed on purpose",
		},
		{name: "twice in a row", listeners: "once,sync", requests: 2, wantEvents: []string{"sync", "once", "sync"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWorker(t, workerConfig{app: "unit/oob.js", env: []string{"OOB_LISTENERS=" + tt.listeners}, keepReady: true})
			w.waitReady(t)
			if _, err := w.berth.conn.Write([]byte(strings.Repeat("OOB=1\n", tt.requests))); err != nil {
				t.Fatal(err)
			}
			for range tt.requests {
				w.berth.next(t, "OOB_DONE=1\n", 5*time.Second)
			}
			// OOB_DONE=1 came after every listener was done.
			var events []string
			decode(t, get(t, w.sock, "/events"), &events)
			if !slices.Equal(events, tt.wantEvents) {
				t.Errorf("after OOB_DONE=1 the listeners had done %q, want %q", events, tt.wantEvents)
			}
			if tt.wantOutput != "" {
				w.waitOutput(t, tt.wantOutput, startTimeout)
			}
		})
	}
}
