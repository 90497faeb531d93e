package h1

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// readCounter counts the reads a Reader makes.
type readCounter struct {
	r     io.Reader
	reads int
}

func (c *readCounter) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// TestNewReaderSize: with a 32 KiB buffer a response of a few KiB comes
// in one read; the default 4 KiB buffer needs more.
func TestNewReaderSize(t *testing.T) {
	body := strings.Repeat("x", 6000)
	msg := "HTTP/1.1 200 OK\r\nContent-Length: 6000\r\n\r\n" + body
	for _, tc := range []struct {
		name      string
		size      int
		wantReads int
	}{
		{"default", 0, 2},
		{"32 KiB", 32 << 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &readCounter{r: strings.NewReader(msg)}
			r := NewReaderSize(src, Limits{}, tc.size)
			var resp Response
			if err := r.ReadResponse(&resp); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := r.Body(resp.ContentLength, false).CopyTo(&out, nil); err != nil {
				t.Fatal(err)
			}
			if out.String() != body {
				t.Fatalf("body of %d bytes, want 6000", out.Len())
			}
			if src.reads < tc.wantReads || tc.size > 0 && src.reads != tc.wantReads {
				t.Errorf("%d reads, want %d", src.reads, tc.wantReads)
			}
		})
	}
}
