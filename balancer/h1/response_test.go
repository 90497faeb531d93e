package h1

import (
	"io"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name      string
		rfc       string
		in        string
		method    string
		status    int
		reason    string
		cl        int64
		chunked   bool
		keepAlive bool
		body      string
		errStatus int
	}{
		{name: "content-length", rfc: "9112 §6.3 (6)", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, reason: "OK", cl: 5, keepAlive: true, body: "hello"},
		{name: "chunked", rfc: "9112 §6.3 (4)", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 200, reason: "OK", cl: -1, chunked: true, keepAlive: true, body: "hello"},
		{name: "gzip, chunked", rfc: "9112 §6.3 (4)", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 200, reason: "OK", cl: -1, chunked: true, keepAlive: true, body: "hello"},
		{name: "TE not ending in chunked runs until close", rfc: "9112 §6.3 (4)", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello", status: 200, reason: "OK", cl: -1, body: "hello"},
		{name: "CL and TE: TE wins, closes", rfc: "9112 §6.3 (3)", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 200, reason: "OK", cl: -1, chunked: true, body: "hello"},
		{name: "until close", rfc: "9112 §6.3 (8)", in: "HTTP/1.1 200 OK\r\n\r\nhello", status: 200, reason: "OK", cl: -1, body: "hello"},
		{name: "204", rfc: "9112 §6.3 (1)", in: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", status: 204, reason: "No Content", keepAlive: true},
		{name: "304 without framing keeps alive", rfc: "9112 §6.3 (1)", in: "HTTP/1.1 304 Not Modified\r\n\r\n", status: 304, reason: "Not Modified", keepAlive: true},
		{name: "100", rfc: "9112 §6.3 (1)", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100, reason: "Continue", keepAlive: true},
		{name: "HEAD", rfc: "9112 §6.3 (1)", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method: "HEAD", status: 200, reason: "OK", cl: 5, keepAlive: true},
		{name: "no reason, no SP", rfc: "9112 §4", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200, keepAlive: true},
		{name: "empty reason", rfc: "9112 §4", in: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", status: 200, keepAlive: true},
		{name: "HTTP/1.0 closes", rfc: "9112 §9.3", in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, reason: "OK"},
		{name: "HTTP/1.0 keep-alive", rfc: "9112 §C.2.2", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", status: 200, reason: "OK", keepAlive: true},
		{name: "Connection: close", rfc: "9112 §9.6", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status: 200, reason: "OK"},
		{name: "TE in HTTP/1.0", rfc: "9112 §6.1", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", errStatus: 502},
		{name: "two CLs", rfc: "9112 §6.3 (5)", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", errStatus: 502},
		{name: "bad CL", rfc: "9112 §6.3 (5)", in: "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", errStatus: 502},
		{name: "HTTP/2.0", rfc: "9112 §2.3", in: "HTTP/2.0 200 OK\r\n\r\n", errStatus: 502},
		{name: "status 2 digits", rfc: "9112 §4", in: "HTTP/1.1 20 OK\r\n\r\n", errStatus: 502},
		{name: "status 099", rfc: "9110 §15", in: "HTTP/1.1 099 OK\r\n\r\n", errStatus: 502},
		{name: "bare LF", rfc: "9112 §2.2", in: "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", errStatus: 502},
		{name: "obs-fold", rfc: "9112 §5.2", in: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", errStatus: 502},
		{name: "CTL in reason", rfc: "9112 §4", in: "HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n", errStatus: 502},
		{name: "garbage", rfc: "9112 §4", in: "hello\r\n\r\n", errStatus: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in), Limits{})
			var resp Response
			err := r.ReadResponse(&resp)
			if got := status(err); got != tt.errStatus {
				t.Fatalf("RFC %s: error status %d (%v), want %d", tt.rfc, got, err, tt.errStatus)
			}
			if err != nil {
				return
			}
			if resp.Status != tt.status || string(resp.Reason) != tt.reason {
				t.Errorf("status %d %q", resp.Status, resp.Reason)
			}
			if resp.ContentLength != tt.cl || resp.Chunked != tt.chunked || resp.KeepAlive != tt.keepAlive {
				t.Errorf("RFC %s: ContentLength %d Chunked %v KeepAlive %v", tt.rfc, resp.ContentLength, resp.Chunked, resp.KeepAlive)
			}
			if resp.Chunked && resp.Header.Has("content-length") {
				t.Errorf("Content-Length kept beside Transfer-Encoding")
			}
			method := tt.method
			if method == "" {
				method = "GET"
			}
			body, err := io.ReadAll(r.Body(resp.BodyLength([]byte(method))))
			if err != nil || string(body) != tt.body {
				t.Errorf("body %q, %v; want %q", body, err, tt.body)
			}
		})
	}
}

// TestInterim reads 1xx responses before the final one on one connection.
func TestInterim(t *testing.T) {
	in := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	r := NewReader(strings.NewReader(in), Limits{})
	var resp Response
	for _, want := range []int{100, 103, 200} {
		if err := r.ReadResponse(&resp); err != nil || resp.Status != want {
			t.Fatalf("status %d, %v; want %d", resp.Status, err, want)
		}
	}
	body, err := io.ReadAll(r.Body(resp.BodyLength([]byte("GET"))))
	if err != nil || string(body) != "ok" {
		t.Fatalf("body %q %v", body, err)
	}
}
