package buffer

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"berth/packaging/testenv"
)

// TestCannotHold: when no temporary file can be made (the directory is a
// regular file here), bodies past the memory share pass through whole and
// in order, and the log says so once.
func TestCannotHold(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testCannotHold(t, notDir, "not a directory")
}

// TestFullDisk: the same on a file system that fills while a body is being
// written to it (a 256 KiB tmpfs). A short write's bytes reach the other
// side once.
func TestFullDisk(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount a 256 KiB tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	testCannotHold(t, dir, "no space left on device")
}

// testCannotHold sends a 1 MiB response and two 1 MiB uploads (with a
// length and chunked) through a Buffer whose files go to dir, with 4 KiB
// of memory per body; holding fails with wantErr.
func testCannotHold(t *testing.T, dir, wantErr string) {
	body := make([]byte, 1<<20)
	rand.Read(body)
	var logs testenv.LogBuffer
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
			return
		}
		got, err := io.ReadAll(r.Body)
		if err != nil || !bytes.Equal(got, body) {
			http.Error(w, fmt.Sprintf("read %d bytes (%v): %s", len(got), err, differ(got, body)), 500)
			return
		}
		io.WriteString(w, "whole")
	}, Config{Dir: dir, MemoryBytes: 4 << 10, Log: logs.Logger(slog.LevelInfo)})
	c, br := f.dial(t)

	io.WriteString(c, "GET /down HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("response: the client read %d bytes (%v): %s", len(got), err, differ(got, body))
	}

	for _, length := range []int64{int64(len(body)), -1} { // -1: chunked
		req, _ := http.NewRequest("POST", "http://x/up", io.NopCloser(bytes.NewReader(body)))
		req.ContentLength = length
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(answer) != "whole" {
			t.Fatalf("upload with length %d: %s %q", length, resp.Status, answer)
		}
	}

	if st := f.buf.Stats(); st.HoldFailures != 3 {
		t.Errorf("Stats().HoldFailures = %d, want 3 (a response, two uploads)", st.HoldFailures)
	}
	out := logs.String()
	if n := strings.Count(out, "cannot hold"); n != 1 || !strings.Contains(out, wantErr) || !strings.Contains(out, "dir="+dir) || !strings.Contains(out, "failures=1") {
		t.Errorf("want one warning (three failures within %s) naming %s and %q:\n%s", WarnEvery, dir, wantErr, out)
	}
}

// differ says where got first differs from want.
func differ(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d", i)
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d bytes instead of %d", len(got), len(want))
	}
	return "the same"
}

// TestHeldResponseCutShort: a worker that dies partway through a held
// response (it promised 1 MiB and sent 300 KiB) must not make the client
// think the response complete: the client gets what came, then the
// connection ends.
func TestHeldResponseCutShort(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		w.WriteHeader(200)
		w.Write(bytes.Repeat([]byte("p"), 300<<10))
		w.(http.Flusher).Flush()
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}, Config{MemoryBytes: 64 << 10})
	c, br := f.dial(t)
	io.WriteString(c, "GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no head: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err == nil || len(got) >= 1<<20 {
		t.Fatalf("the client read %d bytes and %v: a cut response looked complete", len(got), err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection stayed open after a cut response")
	}
}
