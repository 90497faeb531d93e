package h1

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func fields(kv ...string) Fields {
	var fs Fields
	for i := 0; i < len(kv); i += 2 {
		fs.Add([]byte(kv[i]), []byte(kv[i+1]))
	}
	return fs
}

func TestAppendHeads(t *testing.T) {
	got := AppendRequestHead(nil, []byte("GET"), []byte("/a?b"), fields("Host", "h", "X-A", "1"))
	if want := "GET /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"; string(got) != want {
		t.Errorf("request head %q, want %q", got, want)
	}
	tests := []struct {
		name string
		resp Response
		want string
	}{
		{name: "standard reason", resp: Response{Status: 404, Header: fields("Content-Length", "0")}, want: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"},
		{name: "own reason", resp: Response{Status: 200, Reason: []byte("Fine")}, want: "HTTP/1.1 200 Fine\r\n\r\n"},
		{name: "unknown status", resp: Response{Status: 599}, want: "HTTP/1.1 599 \r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AppendResponseHead([]byte("x"), &tt.resp); string(got) != "x"+tt.want {
				t.Errorf("got %q, want %q", got, "x"+tt.want)
			}
		})
	}
}

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name string
		in   Fields
		want string
	}{
		{name: "fixed list (9110 §7.6.1)", in: fields("Host", "h", "Connection", "keep-alive", "Keep-Alive", "timeout=5", "TE", "trailers", "Transfer-Encoding", "chunked", "Upgrade", "websocket", "Trailer", "X", "Proxy-Connection", "close", "X-A", "1"), want: "Host X-A"},
		{name: "named by Connection", in: fields("X-B", "2", "Connection", "x-a, X-B", "X-A", "1", "X-C", "3"), want: "X-C"},
		{name: "two Connection fields", in: fields("Connection", "x-a", "X-A", "1", "Connection", "x-b", "X-B", "2", "X-C", "3"), want: "X-C"},
		{name: "Host and Content-Length kept", in: fields("Connection", "host, content-length, x-forwarded-for", "Host", "h", "Content-Length", "3", "X-Forwarded-For", "1.2.3.4"), want: "Host Content-Length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := tt.in
			RemoveHopByHop(&fs)
			var names []string
			for _, f := range fs {
				names = append(names, string(f.Name))
			}
			if got := strings.Join(names, " "); got != tt.want {
				t.Errorf("left %q, want %q", got, tt.want)
			}
		})
	}
}

func TestChunkedWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
	var c ChunkedWriter
	c.Reset(&buf)
	parts := []string{"hello", "", strings.Repeat("x", 70000), " world"}
	for _, p := range parts {
		if n, err := c.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatal(n, err)
		}
	}
	if err := c.Close(fields("X-Sum", "42")); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf, Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	b := r.Body(req.ContentLength, req.Chunked)
	got, err := io.ReadAll(b)
	if err != nil || string(got) != strings.Join(parts, "") {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
	if string(b.Trailer().Get("x-sum")) != "42" {
		t.Fatalf("trailer %q", b.Trailer())
	}
}
