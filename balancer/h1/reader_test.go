package h1

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// status returns the *Error's status, 0 for nil, -1 for another error.
func status(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return -1
}

func TestReadRequestRefuses(t *testing.T) {
	long := strings.Repeat("a", DefaultMaxRequestLine)
	many := strings.Repeat("X-A: b\r\n", DefaultMaxFields+1)
	big := "X-Big: " + strings.Repeat("b", DefaultMaxHeaderBytes) + "\r\n"
	tests := []struct {
		name   string
		rfc    string
		in     string
		status int
	}{
		{name: "valid", rfc: "9112 §3", in: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 0},
		{name: "lowercase method token", rfc: "9112 §3.1 (method is a case-sensitive token)", in: "get / HTTP/1.1\r\nHost: a\r\n\r\n", status: 0},
		{name: "two SPs after method", rfc: "9112 §3", in: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "two SPs before version", rfc: "9112 §3", in: "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "HTAB as separator", rfc: "9112 §3", in: "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "trailing SP", rfc: "9112 §3", in: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", status: 400},
		{name: "no version (HTTP/0.9)", rfc: "9112 §2.3", in: "GET /\r\n\r\n", status: 400},
		{name: "method not a token", rfc: "9112 §3.1", in: "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "CTL in target", rfc: "9112 §3.2", in: "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "DEL in target", rfc: "9112 §3.2", in: "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "NUL in target", rfc: "9112 §3.2", in: "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "SP in target", rfc: "9112 §3.2", in: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "target not in a form", rfc: "9112 §3.2", in: "GET a HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "absolute-form", rfc: "9112 §3.2.2", in: "GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n", status: 0},
		{name: "asterisk-form with GET", rfc: "9112 §3.2.4", in: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "asterisk-form with OPTIONS", rfc: "9112 §3.2.4", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", status: 0},
		{name: "lowercase version", rfc: "9112 §2.3 (case-sensitive)", in: "GET / http/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "HTTP/1.2", rfc: "9112 §2.3, 9110 §15.6.6", in: "GET / HTTP/1.2\r\nHost: a\r\n\r\n", status: 505},
		{name: "HTTP/2.0", rfc: "9110 §15.6.6", in: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505},
		{name: "HTTP/2 preface", rfc: "9113 §3.4", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 505},
		{name: "HTTP/1.10", rfc: "9112 §2.3", in: "GET / HTTP/1.10\r\nHost: a\r\n\r\n", status: 400},
		{name: "one leading CRLF", rfc: "9112 §2.2", in: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 0},
		{name: "two leading CRLFs", rfc: "9112 §2.2", in: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "leading bare LF", rfc: "9112 §2.2", in: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "TLS ClientHello", rfc: "9112 §3", in: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", status: 400},
		{name: "bare LF after request line", rfc: "9112 §2.2", in: "GET / HTTP/1.1\nHost: a\r\n\r\n", status: 400},
		{name: "bare LF after field", rfc: "9112 §2.2", in: "GET / HTTP/1.1\r\nHost: a\n\r\n", status: 400},
		{name: "bare LF ends head", rfc: "9112 §2.2", in: "GET / HTTP/1.1\r\nHost: a\r\n\n", status: 400},
		{name: "bare CR in value", rfc: "9110 §5.5", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", status: 400},
		{name: "NUL in value", rfc: "9110 §5.5", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", status: 400},
		{name: "DEL in value", rfc: "9110 §5.5", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", status: 400},
		{name: "VT in value", rfc: "9110 §5.5", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", status: 400},
		{name: "HTAB in value", rfc: "9110 §5.5", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", status: 0},
		{name: "obs-text in value", rfc: "9110 §5.5", in: "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", status: 0},
		{name: "non-ASCII in name", rfc: "9110 §5.1", in: "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: a\r\n\r\n", status: 400},
		{name: "NUL in name", rfc: "9110 §5.1", in: "GET / HTTP/1.1\r\nHost: a\r\nX\x00: a\r\n\r\n", status: 400},
		{name: "space before colon", rfc: "9112 §5.1", in: "GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n", status: 400},
		{name: "tab before colon", rfc: "9112 §5.1", in: "GET / HTTP/1.1\r\nHost: a\r\nX\t: a\r\n\r\n", status: 400},
		{name: "empty name", rfc: "9110 §5.1", in: "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", status: 400},
		{name: "no colon", rfc: "9112 §5", in: "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", status: 400},
		{name: "obs-fold", rfc: "9112 §5.2", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", status: 400},
		{name: "obs-fold with HTAB", rfc: "9112 §5.2", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", status: 400},
		{name: "whitespace before first field", rfc: "9112 §2.2", in: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", status: 400},
		{name: "HTTP/1.1 without Host", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two Hosts", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400},
		{name: "two Hosts in HTTP/1.0", rfc: "9112 §3.2", in: "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", status: 400},
		{name: "Host with port", rfc: "9110 §7.2", in: "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", status: 0},
		{name: "Host IPv6 literal", rfc: "9110 §7.2", in: "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", status: 0},
		{name: "Host with SP", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400},
		{name: "Host with slash", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", status: 400},
		{name: "Host with userinfo", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", status: 400},
		{name: "Host with bad port", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", status: 400},
		{name: "Host only a port", rfc: "9112 §3.2", in: "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", status: 400},
		{name: "CONNECT authority-form", rfc: "9112 §3.2.3", in: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", status: 0},
		{name: "CONNECT without port", rfc: "9112 §3.2.3", in: "CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "CONNECT origin-form", rfc: "9112 §3.2.3", in: "CONNECT a:b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "HTTP/1.0 without Host", rfc: "9112 §3.2", in: "GET / HTTP/1.0\r\n\r\n", status: 0},
		{name: "CL with sign", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", status: 400},
		{name: "CL negative", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", status: 400},
		{name: "CL hex", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", status: 400},
		{name: "CL empty", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", status: 400},
		{name: "CL space inside", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", status: 400},
		{name: "CL overflow", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", status: 400},
		{name: "CL max int64", rfc: "9110 §8.6", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", status: 0},
		{name: "CL list of equal values", rfc: "9112 §6.3 (5)", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", status: 400},
		{name: "two equal CLs", rfc: "9112 §6.3 (5)", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", status: 400},
		{name: "two differing CLs", rfc: "9112 §6.3 (5)", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", status: 400},
		{name: "CL and TE", rfc: "9112 §6.1, §6.3 (3)", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "TE and CL", rfc: "9112 §6.1, §6.3 (3)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", status: 400},
		{name: "HTAB-prefixed TE and CL", rfc: "9112 §6.3 (3)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", status: 400},
		{name: "obs-folded TE", rfc: "9112 §5.2", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", status: 400},
		{name: "TE not chunked", rfc: "9112 §6.3 (4)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400},
		{name: "TE chunked not last", rfc: "9112 §6.3 (4)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", status: 400},
		{name: "TE chunked twice", rfc: "9112 §7", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", status: 400},
		{name: "TE in two fields, chunked first", rfc: "9112 §6.3 (4)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", status: 400},
		{name: "TE gzip then chunked", rfc: "9112 §6.1 (501 for an unknown coding)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", status: 501},
		{name: "TE chunkedx", rfc: "9112 §6.3 (4)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", status: 400},
		{name: "TE empty", rfc: "9112 §6.3 (4)", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", status: 400},
		{name: "TE with VT", rfc: "9110 §5.5", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", status: 400},
		{name: "TE in HTTP/1.0", rfc: "9112 §6.1", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "request line over limit", rfc: "9112 §3 (414)", in: "GET /" + long + " HTTP/1.1\r\nHost: a\r\n\r\n", status: 414},
		{name: "request line over limit, unfinished", rfc: "9112 §3 (414)", in: "GET /" + long, status: 414},
		{name: "too many fields", rfc: "6585 §5 (431)", in: "GET / HTTP/1.1\r\nHost: a\r\n" + many + "\r\n", status: 431},
		{name: "head over limit", rfc: "6585 §5 (431)", in: "GET / HTTP/1.1\r\nHost: a\r\n" + big + "\r\n", status: 431},
		{name: "head over limit, unfinished", rfc: "6585 §5 (431)", in: "GET / HTTP/1.1\r\nHost: a\r\n" + big, status: 431},
		{name: "unfinished head", rfc: "9112 §8", in: "GET / HTTP/1.1\r\nHost: a\r\n", status: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in), Limits{})
			var req Request
			err := r.ReadRequest(&req)
			if got := status(err); got != tt.status {
				t.Fatalf("RFC %s: status %d (err %v), want %d", tt.rfc, got, err, tt.status)
			}
		})
	}
}

func TestReadRequestFields(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		method, tgt string
		minor       int
		cl          int64
		chunked     bool
		keepAlive   bool
		upgrade     bool
		expect      bool
		host        string
		hasHost     bool
	}{
		{name: "HTTP/1.1 keeps alive (9112 §9.3)", in: "GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n", method: "GET", tgt: "/a?b", minor: 1, keepAlive: true, host: "h", hasHost: true},
		{name: "HTTP/1.1 Connection: close (9112 §9.6)", in: "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n", method: "GET", tgt: "/", minor: 1, host: "h", hasHost: true},
		{name: "HTTP/1.0 closes (9112 §9.3)", in: "GET / HTTP/1.0\r\n\r\n", method: "GET", tgt: "/"},
		{name: "HTTP/1.0 keep-alive (9112 §C.2.2)", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", method: "GET", tgt: "/", keepAlive: true},
		{name: "Content-Length with OWS (9112 §5.1)", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \t12 \r\n\r\n", method: "POST", tgt: "/", minor: 1, cl: 12, keepAlive: true, host: "h", hasHost: true},
		{name: "chunked (9112 §6.1)", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", method: "POST", tgt: "/", minor: 1, cl: -1, chunked: true, keepAlive: true, host: "h", hasHost: true},
		{name: "HTAB before chunked is OWS (9112 §5.1)", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n", method: "POST", tgt: "/", minor: 1, cl: -1, chunked: true, keepAlive: true, host: "h", hasHost: true},
		{name: "upgrade (9110 §7.8)", in: "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", tgt: "/ws", minor: 1, keepAlive: true, upgrade: true, host: "h", hasHost: true},
		{name: "Upgrade without Connection (9110 §7.8)", in: "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", method: "GET", tgt: "/ws", minor: 1, keepAlive: true, host: "h", hasHost: true},
		{name: "upgrade ignored in HTTP/1.0 (9110 §7.8)", in: "GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", tgt: "/ws"},
		{name: "Expect: 100-continue (9110 §10.1.1)", in: "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", method: "PUT", tgt: "/", minor: 1, cl: 1, keepAlive: true, expect: true, host: "h", hasHost: true},
		{name: "Expect ignored in HTTP/1.0 (9110 §10.1.1)", in: "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", method: "PUT", tgt: "/", cl: 1},
		{name: "empty Host (9112 §3.2)", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n", method: "GET", tgt: "/", minor: 1, keepAlive: true, hasHost: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in), Limits{})
			var req Request
			if err := r.ReadRequest(&req); err != nil {
				t.Fatal(err)
			}
			if string(req.Method) != tt.method || string(req.Target) != tt.tgt || req.Minor != tt.minor {
				t.Errorf("got %q %q 1.%d", req.Method, req.Target, req.Minor)
			}
			if req.ContentLength != tt.cl || req.Chunked != tt.chunked {
				t.Errorf("framing: ContentLength %d Chunked %v", req.ContentLength, req.Chunked)
			}
			if req.KeepAlive != tt.keepAlive || req.Upgrade != tt.upgrade || req.ExpectContinue != tt.expect {
				t.Errorf("KeepAlive %v Upgrade %v ExpectContinue %v", req.KeepAlive, req.Upgrade, req.ExpectContinue)
			}
			if string(req.Host()) != tt.host || req.Header.Has("host") != tt.hasHost {
				t.Errorf("Host %q (present %v)", req.Host(), req.Header.Has("host"))
			}
		})
	}
}

// TestPipeline reads several requests from one stream, one byte per Read
// and all at once, and checks each one's body and where it ends.
func TestPipeline(t *testing.T) {
	in := "\r\nPOST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n" +
		"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /4 HTTP/1.0\r\n\r\n"
	want := []struct{ target, body string }{{"/1", "hello"}, {"/2", "abc0123456789abcdef"}, {"/3", ""}, {"/4", ""}}
	for _, mode := range []string{"whole", "one byte"} {
		t.Run(mode, func(t *testing.T) {
			var src io.Reader = strings.NewReader(in)
			if mode == "one byte" {
				src = iotest.OneByteReader(src)
			}
			r := NewReader(src, Limits{})
			var req Request
			for _, w := range want {
				if err := r.ReadRequest(&req); err != nil {
					t.Fatalf("%s: %v", w.target, err)
				}
				target := string(req.Target)
				body, err := io.ReadAll(r.Body(req.ContentLength, req.Chunked))
				if err != nil {
					t.Fatalf("%s: body: %v", target, err)
				}
				if target != w.target || string(body) != w.body {
					t.Errorf("got %s %q, want %s %q", target, body, w.target, w.body)
				}
				if target == "/2" && string(r.body.Trailer().Get("x-t")) != "1" {
					t.Errorf("trailer %q", r.body.Trailer())
				}
			}
			if err := r.ReadRequest(&req); err != io.EOF {
				t.Fatalf("after the last request: %v, want io.EOF", err)
			}
		})
	}
}

// TestHeadStaysValid checks that reading a body never overwrites the head
// it belongs to, even when the body is much larger than the buffer.
func TestHeadStaysValid(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10000)
	pad := strings.Repeat("p", 3000)
	in := "POST /x HTTP/1.1\r\nHost: h\r\nX-Pad: " + pad + "\r\nContent-Length: 100000\r\n\r\n" + string(body)
	r := NewReader(iotest.HalfReader(strings.NewReader(in)), Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := r.Body(req.ContentLength, req.Chunked).CopyTo(&out, nil)
	if err != nil || n != int64(len(body)) || !bytes.Equal(out.Bytes(), body) {
		t.Fatalf("CopyTo: %d, %v", n, err)
	}
	if string(req.Target) != "/x" || string(req.Header.Get("x-pad")) != pad || string(req.Host()) != "h" {
		t.Fatalf("head overwritten: %q %q", req.Target, req.Header)
	}
}

func TestBodyUnreadRefused(t *testing.T) {
	in := "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadRequest(&req); err == nil || string(req.Target) == "/smuggled" {
		t.Fatalf("second request read over an unread body: %v %q", err, req.Target)
	}
}

func TestChunked(t *testing.T) {
	const head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name    string
		rfc     string
		in      string
		body    string
		status  int // of the body's error; -1 another error
		trailer string
		only    string // the only trailer field, when set
	}{
		{name: "one chunk", rfc: "9112 §7.1", in: "5\r\nhello\r\n0\r\n\r\n", body: "hello"},
		{name: "uppercase hex", rfc: "9112 §7.1", in: "A\r\n0123456789\r\n0\r\n\r\n", body: "0123456789"},
		{name: "leading zeros", rfc: "9112 §7.1", in: "0005\r\nhello\r\n000\r\n\r\n", body: "hello"},
		{name: "extension", rfc: "9112 §7.1.1", in: "5;a=b;c=\"d e\"\r\nhello\r\n0;z\r\n\r\n", body: "hello"},
		{name: "extension after BWS", rfc: "9112 §7.1.1", in: "5 ;a=b\r\nhello\r\n0\r\n\r\n", body: "hello"},
		{name: "trailer", rfc: "9112 §7.1.2", in: "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", body: "hello", trailer: "1"},
		{name: "framing fields left out of trailer", rfc: "9110 §6.5.1", in: "5\r\nhello\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: x\r\nConnection: close\r\nX-Sum: 1\r\n\r\n", body: "hello", trailer: "1", only: "X-Sum"},
		{name: "15 hex digits", rfc: "9112 §7.1", in: "000000000000005\r\nhello\r\n0\r\n\r\n", body: "hello"},
		{name: "size overflow", rfc: "9112 §7.1", in: "10000000000000005\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "16 hex digits", rfc: "9112 §7.1", in: "fffffffffffffffff\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "negative size", rfc: "9112 §7.1", in: "-5\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "0x prefix", rfc: "9112 §7.1", in: "0x5\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "empty size", rfc: "9112 §7.1", in: "\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "bare LF after size", rfc: "9112 §7.1", in: "5\nhello\r\n0\r\n\r\n", status: 400},
		{name: "bare LF after data", rfc: "9112 §7.1", in: "5\r\nhello\n0\r\n\r\n", status: 400},
		{name: "no CRLF after data", rfc: "9112 §7.1", in: "5\r\nhelloX\r\n0\r\n\r\n", status: 400},
		{name: "bare LF after last chunk", rfc: "9112 §7.1", in: "5\r\nhello\r\n0\n\r\n", status: 400},
		{name: "bare LF ends trailer", rfc: "9112 §7.1.2", in: "5\r\nhello\r\n0\r\n\n", status: 400},
		{name: "CTL in extension", rfc: "9112 §7.1.1", in: "5;a\x00\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "bare CR in extension", rfc: "9112 §7.1.1", in: "5;a\rb\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "junk after size", rfc: "9112 §7.1", in: "5x\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "extension too long", rfc: "9112 §7.1.1", in: "5;" + strings.Repeat("a", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", status: 400},
		{name: "obs-fold in trailer", rfc: "9112 §5.2", in: "5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n", status: 400},
		{name: "NUL in trailer", rfc: "9110 §5.5", in: "5\r\nhello\r\n0\r\nX: a\x00\r\n\r\n", status: 400},
		{name: "truncated data", rfc: "9112 §8", in: "5\r\nhel", status: -1},
		{name: "truncated trailer", rfc: "9112 §8", in: "5\r\nhello\r\n0\r\n", status: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, one := range []bool{false, true} {
				var src io.Reader = strings.NewReader(head + tt.in)
				if one {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src, Limits{})
				var req Request
				if err := r.ReadRequest(&req); err != nil {
					t.Fatal(err)
				}
				b := r.Body(req.ContentLength, req.Chunked)
				body, err := io.ReadAll(b)
				if got := status(err); got != tt.status {
					t.Fatalf("RFC %s (one byte %v): status %d (err %v), want %d", tt.rfc, one, got, err, tt.status)
				}
				if err == nil && string(body) != tt.body {
					t.Errorf("body %q, want %q", body, tt.body)
				}
				if err == nil && !b.Done() {
					t.Errorf("not Done at the end")
				}
				if got := string(b.Trailer().Get("x-sum")); got != tt.trailer {
					t.Errorf("trailer X-Sum %q, want %q", got, tt.trailer)
				}
				if tt.only != "" && (len(b.Trailer()) != 1 || string(b.Trailer()[0].Name) != tt.only) {
					t.Errorf("trailer %q, want only %s", b.Trailer(), tt.only)
				}
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int64
		err   error
	}{
		{name: "fixed under", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", limit: 5},
		{name: "fixed over", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nhello!", limit: 5, err: ErrBodyTooLarge},
		{name: "chunked over", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", limit: 5, err: ErrBodyTooLarge},
		{name: "chunked at", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", limit: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in), Limits{})
			var req Request
			if err := r.ReadRequest(&req); err != nil {
				t.Fatal(err)
			}
			b := r.Body(req.ContentLength, req.Chunked)
			b.SetLimit(tt.limit)
			got, err := io.ReadAll(b)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if int64(len(got)) > tt.limit {
				t.Fatalf("read %d bytes over a limit of %d", len(got), tt.limit)
			}
		})
	}
}

// TestCopyToFlushes checks that CopyTo flushes before it waits for the
// connection, so that a streamed body is passed on as it comes.
func TestCopyToFlushes(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	r := NewReader(iotest.OneByteReader(strings.NewReader(in)), Limits{})
	var resp Response
	if err := r.ReadResponse(&resp); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var unflushed int
	flushes := 0
	w := writerFunc(func(p []byte) (int, error) { unflushed += len(p); return out.Write(p) })
	n, err := r.Body(resp.BodyLength([]byte("GET"))).CopyTo(w, func() error { flushes++; unflushed = 0; return nil })
	if err != nil || out.String() != "hello world" || n != 11 {
		t.Fatalf("CopyTo: %d %v %q", n, err, out.String())
	}
	if flushes == 0 || unflushed != 0 {
		t.Fatalf("%d flushes, %d bytes never flushed before waiting", flushes, unflushed)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestReadLarge reads large bodies with a large p, which Read fills from
// the connection directly when nothing is buffered.
func TestReadLarge(t *testing.T) {
	content := strings.Repeat("0123456789abcdef", 4000)
	var chunked strings.Builder
	for i := 0; i < len(content); i += 10000 {
		part := content[i:min(i+10000, len(content))]
		chunked.WriteString(strconv.FormatInt(int64(len(part)), 16) + "\r\n" + part + "\r\n")
	}
	chunked.WriteString("0\r\n\r\n")
	tests := []struct {
		name string
		in   string
		resp bool
	}{
		{name: "fixed", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(content)) + "\r\n\r\n" + content + "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "chunked", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked.String() + "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "until close", in: "HTTP/1.1 200 OK\r\n\r\n" + content, resp: true},
	}
	for _, tt := range tests {
		for _, src := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"half", iotest.HalfReader}, {"data+EOF", iotest.DataErrReader}} {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				r := NewReader(src.wrap(strings.NewReader(tt.in)), Limits{})
				var b *Body
				if tt.resp {
					var resp Response
					if err := r.ReadResponse(&resp); err != nil {
						t.Fatal(err)
					}
					b = r.Body(resp.BodyLength([]byte("GET")))
				} else {
					var req Request
					if err := r.ReadRequest(&req); err != nil {
						t.Fatal(err)
					}
					b = r.Body(req.ContentLength, req.Chunked)
				}
				var got []byte
				p := make([]byte, 3*bufSize)
				for {
					n, err := b.Read(p)
					got = append(got, p[:n]...)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if string(got) != content || !b.Done() {
					t.Fatalf("read %d bytes (Done %v), want %d", len(got), b.Done(), len(content))
				}
				if !tt.resp {
					var req Request
					if err := r.ReadRequest(&req); err != nil {
						t.Fatalf("next request: %v", err)
					}
				}
			})
		}
	}
}

// TestLimitBoundaries checks each limit at its value and one past it.
func TestLimitBoundaries(t *testing.T) {
	lim := Limits{MaxHeaderBytes: 200, MaxRequestLine: 50, MaxFields: 3}
	line := func(n int) string { // a request line of n bytes
		return "GET /" + strings.Repeat("a", n-len("GET / HTTP/1.1")) + " HTTP/1.1"
	}
	head := func(n int) string { // a head of n bytes, 2 fields
		const start = "GET / HTTP/1.1\r\nHost: h\r\nX: "
		return start + strings.Repeat("v", n-len(start)-4) + "\r\n\r\n"
	}
	tests := []struct {
		name   string
		in     string
		status int
	}{
		{name: "request line at limit", in: line(50) + "\r\nHost: h\r\n\r\n"},
		{name: "request line over limit", in: line(51) + "\r\nHost: h\r\n\r\n", status: 414},
		{name: "fields at limit", in: "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"},
		{name: "fields over limit", in: "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", status: 431},
		{name: "head at limit", in: head(200)},
		{name: "head over limit", in: head(201), status: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, one := range []bool{false, true} {
				var src io.Reader = strings.NewReader(tt.in)
				if one {
					src = iotest.OneByteReader(src)
				}
				var req Request
				err := NewReader(src, lim).ReadRequest(&req)
				if got := status(err); got != tt.status {
					t.Fatalf("one byte %v: status %d (%v), want %d", one, got, err, tt.status)
				}
			}
		})
	}
}

// TestLargeHead reads a head that needs the buffer to grow, then a small
// one after it on the same connection.
func TestLargeHead(t *testing.T) {
	cookie := strings.Repeat("c", 20000)
	in := "GET /big HTTP/1.1\r\nHost: h\r\nCookie: " + cookie + "\r\n\r\nGET /small HTTP/1.1\r\nHost: h\r\n\r\n"
	r := NewReader(iotest.HalfReader(strings.NewReader(in)), Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	if string(req.Header.Get("cookie")) != cookie {
		t.Fatal("cookie lost")
	}
	if err := r.ReadRequest(&req); err != nil || string(req.Target) != "/small" {
		t.Fatalf("%q %v", req.Target, err)
	}
}

// TestRelease checks that Release gives the buffer back only when nothing
// is buffered, and that reading goes on after it.
func TestRelease(t *testing.T) {
	in := "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if r.buf == nil || r.Buffered() == 0 {
		t.Fatal("Release dropped buffered bytes")
	}
	if err := r.ReadRequest(&req); err != nil || string(req.Target) != "/2" {
		t.Fatalf("%q %v", req.Target, err)
	}
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept the buffer of an idle connection")
	}
	if err := r.ReadRequest(&req); err != io.EOF {
		t.Fatalf("after Release: %v, want io.EOF", err)
	}
}

// TestReset reuses a Reader on another connection.
func TestReset(t *testing.T) {
	r := NewReader(strings.NewReader("GET /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab"), Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	r.Reset(strings.NewReader("GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"))
	if err := r.ReadRequest(&req); err != nil || string(req.Target) != "/2" {
		t.Fatalf("%q %v", req.Target, err)
	}
}

// countReads counts the Read calls made on a connection.
type countReads struct {
	r     io.Reader
	calls int
}

func (c *countReads) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// TestOneReadPerSmallRequest checks that a browser-sized request, head and
// small body, costs one read from the connection.
func TestOneReadPerSmallRequest(t *testing.T) {
	in := strings.Replace(browserRequest, "\r\n\r\n", "\r\nContent-Length: 11\r\n\r\nhello world", 1)
	c := &countReads{r: strings.NewReader(in)}
	r := NewReader(c, Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := r.Body(req.ContentLength, req.Chunked).CopyTo(&out, nil); err != nil || out.String() != "hello world" {
		t.Fatalf("body %q %v", out.String(), err)
	}
	if c.calls != 1 {
		t.Fatalf("%d reads for a %d-byte request, want 1", c.calls, len(in))
	}
}

// TestFillThenReadResponseKeepsItsBuffer: a worker connection whose
// answers are first read by Fill (the request staged in that read, as the
// proxy does) reads every answer at the bottom of its one buffer. When
// Fill kept the previous head protected, each answer began where the last
// head ended, and every couple of hundred answers the buffer had to move
// to a new 32 KiB array.
func TestFillThenReadResponseKeepsItsBuffer(t *testing.T) {
	msg := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n" +
		"Date: Sun, 06 Dec 2026 22:00:35 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello world\n"
	r := NewReaderSize(&loopReader{msg: []byte(msg)}, Limits{}, 32<<10)
	var resp Response
	get := []byte("GET")
	answer := func() {
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadResponse(&resp); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Body(resp.BodyLength(get)).CopyTo(io.Discard, nil); err != nil {
			t.Fatal(err)
		}
	}
	answer()
	first := &r.buf[0]
	if n := testing.AllocsPerRun(1000, answer); n != 0 {
		t.Errorf("%v allocations per answer, want 0", n)
	}
	if &r.buf[0] != first || r.r != len(msg) {
		t.Errorf("after 1,000 answers the buffer moved or the read position crept up to %d; want the same array, reading at 0", r.r)
	}
}
