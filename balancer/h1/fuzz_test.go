package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

// seeds are real requests and the smuggling cases of issues 8 and 12, for
// every fuzz target's corpus.
var seeds = []string{
	browserRequest,
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2",
	"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
	"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
	"GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
	// Smuggling.
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX\xff: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
	"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// parsed is one parser's view of the first request in the input.
type parsed struct {
	method, target, body string
	consumed             int // bytes of the input the request took
}

func readBerth(data []byte) (parsed, error) {
	src := bytes.NewReader(data)
	r := NewReader(src, Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		return parsed{}, err
	}
	p := parsed{method: string(req.Method), target: string(req.Target)}
	body, err := io.ReadAll(r.Body(req.ContentLength, req.Chunked))
	if err != nil {
		return parsed{}, err
	}
	p.body = string(body)
	p.consumed = len(data) - src.Len() - r.Buffered()
	return p, nil
}

func readNetHTTP(data []byte) (parsed, error) {
	cr := &countingReader{r: bytes.NewReader(data)}
	br := bufio.NewReader(cr)
	req, err := http.ReadRequest(br)
	if err != nil {
		return parsed{}, err
	}
	p := parsed{method: req.Method, target: req.RequestURI}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return parsed{}, err
	}
	p.body = string(body)
	p.consumed = cr.n - br.Buffered()
	return p, nil
}

// allowed is where berth accepts a request that net/http refuses, on
// purpose. Each entry says why; anything else is a finding.
var allowed = []struct {
	why   string
	match func(data []byte, p parsed) bool
}{
	{
		why: "RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line; net/http ignores none",
		match: func(data []byte, _ parsed) bool {
			return bytes.HasPrefix(data, []byte("\r\n"))
		},
	},
	{
		why: "net/http parses the target as a URL (percent-escapes, authority, ...); berth forwards the target as sent, " +
			"checking only its characters and form (RFC 9112 §3.2); the app parses it as Node does",
		match: func(_ []byte, p parsed) bool {
			_, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + p.target + " HTTP/1.1\r\nHost: a\r\n\r\n")))
			return err != nil
		},
	},
	{
		why: "RFC 9112 §7.1.1 allows BWS before a chunk extension's ';'; net/http does not",
		match: func(data []byte, _ parsed) bool {
			return bytes.Contains(data, []byte(" ;")) || bytes.Contains(data, []byte("\t;"))
		},
	},
}

func checkDifferential(t *testing.T, data []byte) {
	b, berr := readBerth(data)
	h, herr := readNetHTTP(data)
	switch {
	case berr == nil && herr == nil:
		if b != h {
			t.Fatalf("berth and net/http disagree on %q:\nberth    %+v\nnet/http %+v", data, b, h)
		}
	case berr == nil:
		for _, a := range allowed {
			if a.match(data, b) {
				return
			}
		}
		t.Fatalf("berth accepts what net/http refuses (%v): %q\nberth: %+v", herr, data, b)
	}
}

// FuzzDifferential feeds the same bytes to berth's Reader and to
// net/http's ReadRequest: where both accept a request, they must agree on
// its method, target, body and where it ends; berth must not accept what
// net/http refuses, except for the reasons in allowed.
func FuzzDifferential(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDifferential)
}

// FuzzReadRequest reads requests and their bodies until an error, with
// small limits and in single-byte reads when the input asks for it; it
// must neither panic nor hang, and every error must be an *Error or an
// end of input.
func FuzzReadRequest(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, oneByte bool) {
		var src io.Reader = bytes.NewReader(data)
		lim := Limits{}
		if oneByte {
			src = iotest.OneByteReader(src)
			lim = Limits{MaxHeaderBytes: 300, MaxRequestLine: 60, MaxFields: 5}
		}
		r := NewReader(src, lim)
		var req Request
		for range 100 {
			err := r.ReadRequest(&req)
			if err != nil {
				checkErr(t, err)
				return
			}
			var out bytes.Buffer
			b := r.Body(req.ContentLength, req.Chunked)
			b.SetLimit(1 << 20)
			if _, err := b.CopyTo(&out, nil); err != nil {
				if !errors.Is(err, ErrBodyTooLarge) {
					checkErr(t, err)
				}
				return
			}
			if !b.Done() {
				t.Fatal("CopyTo returned without error before the body's end")
			}
		}
	})
}

func checkErr(t *testing.T, err error) {
	var e *Error
	if errors.As(err, &e) || err == io.EOF || err == io.ErrUnexpectedEOF {
		return
	}
	t.Fatalf("unexpected error %v", err)
}

// FuzzChunked decodes data as a chunked body twice, with Read into small
// buffers from single-byte reads and with CopyTo from whole reads: both
// must give the same bytes, the same error status and the same end.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET",
		"10000000000000005\r\nhello\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"5\r\nhello\n0\r\n\r\n",
		"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n",
		"000000000000005\r\nhello\r\n0\r\n\r\n",
		"1\r\na\r\n1 ;x\r\nb\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(head), data...)
		// decode returns the body, the error's status and how many bytes
		// of the input the message took; readSize 0 is CopyTo.
		decode := func(oneByte bool, readSize int) (string, int, int) {
			base := bytes.NewReader(in)
			var src io.Reader = base
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			r := NewReader(src, Limits{})
			var req Request
			if err := r.ReadRequest(&req); err != nil {
				t.Fatal(err)
			}
			b := r.Body(req.ContentLength, req.Chunked)
			var out bytes.Buffer
			var err error
			if readSize > 0 {
				p := make([]byte, readSize)
				for {
					var n int
					n, err = b.Read(p)
					out.Write(p[:n])
					if err != nil {
						break
					}
				}
				if err == io.EOF {
					err = nil
				}
			} else {
				_, err = b.CopyTo(&out, nil)
			}
			if err != nil {
				checkErr(t, err)
				return out.String(), status(err), 0
			}
			if !b.Done() {
				t.Fatal("body not Done at its end")
			}
			return out.String(), 0, len(in) - base.Len() - r.Buffered()
		}
		b1, s1, end1 := decode(false, 0)
		for _, size := range []int{3, 2 * bufSize} {
			b2, s2, end2 := decode(true, size)
			if s1 != s2 || s1 == 0 && (b1 != b2 || end1 != end2) {
				t.Fatalf("CopyTo: %q status %d end %d; single-byte reads, Read(%d): %q status %d end %d", b1, s1, end1, size, b2, s2, end2)
			}
		}
	})
}

// FuzzReadResponse reads responses and their bodies until an error; it
// must neither panic nor hang.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), Limits{MaxHeaderBytes: 1000, MaxFields: 10})
		var resp Response
		for range 100 {
			if err := r.ReadResponse(&resp); err != nil {
				checkErr(t, err)
				return
			}
			if resp.Chunked && resp.Header.Has("Content-Length") {
				t.Fatal("Content-Length kept beside chunked")
			}
			b := r.Body(resp.BodyLength([]byte("GET")))
			if _, err := b.CopyTo(io.Discard, nil); err != nil {
				checkErr(t, err)
				return
			}
		}
	})
}

// FuzzDifferentialFraming is FuzzDifferential on requests built from
// framing pieces the fuzzer varies on their own: the version, the
// Transfer-Encoding and Content-Length values (each absent when empty),
// one more field and what follows the head.
func FuzzDifferentialFraming(f *testing.F) {
	f.Add(byte('1'), "chunked", "", "X-A", "1", []byte("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add(byte('1'), "", "5", "Connection", "close", []byte("helloGET"))
	f.Add(byte('1'), "\tchunked", "5", "X", "", []byte("0\r\n\r\n"))
	f.Add(byte('0'), "chunked", "", "Connection", "keep-alive", []byte("0\r\n\r\n"))
	f.Add(byte('1'), "gzip, chunked", "", "Transfer-Encoding", "chunked", []byte("0\r\n\r\n"))
	f.Add(byte('1'), "", "5", "Content-Length", "5", []byte("hello"))
	f.Add(byte('1'), "chunked", "", "Trailer", "X", []byte("3;a=\"b\"\r\nabc\r\n0\r\nX: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, minor byte, te, cl, name, value string, rest []byte) {
		var b bytes.Buffer
		b.WriteString("POST /t HTTP/1.")
		b.WriteByte(minor)
		b.WriteString("\r\nHost: a\r\n")
		if te != "" {
			b.WriteString("Transfer-Encoding: " + te + "\r\n")
		}
		if cl != "" {
			b.WriteString("Content-Length: " + cl + "\r\n")
		}
		if name != "" {
			b.WriteString(name + ": " + value + "\r\n")
		}
		b.WriteString("\r\n")
		b.Write(rest)
		checkDifferential(t, b.Bytes())
	})
}
