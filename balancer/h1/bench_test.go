package h1

import (
	"io"
	"strings"
	"testing"
)

// loopReader serves msg over and over, never more than one message per
// Read, as a client sending one request per round trip does.
type loopReader struct {
	msg []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.msg[l.off:])
	l.off = (l.off + n) % len(l.msg)
	return n, nil
}

const browserRequest = "GET /assets/app.3f2a9c.js?v=12 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"Connection: keep-alive\r\n" +
	"sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n" +
	"sec-ch-ua-mobile: ?0\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n" +
	"sec-ch-ua-platform: \"Linux\"\r\n" +
	"Accept: */*\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\n" +
	"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.1.123456789.1700000000\r\n" +
	"If-None-Match: \"5f3a-18c0a1b2c3d\"\r\n" +
	"\r\n"

func BenchmarkReadRequest(b *testing.B) {
	r := NewReader(&loopReader{msg: []byte(browserRequest)}, Limits{})
	var req Request
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadRequest(&req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadResponseCopyTo(b *testing.B) {
	msg := "HTTP/1.1 200 OK\r\n" +
		"X-Powered-By: Express\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"Content-Length: 12\r\n" +
		"ETag: W/\"c-Lve95gjOVATpfV8EL5X4nxwjKHE\"\r\n" +
		"Date: Sat, 28 Nov 2026 09:00:00 GMT\r\n" +
		"Connection: keep-alive\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"\r\nHello world!"
	r := NewReader(&loopReader{msg: []byte(msg)}, Limits{})
	var resp Response
	get := []byte("GET")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadResponse(&resp); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Body(resp.BodyLength(get)).CopyTo(io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChunked(b *testing.B) {
	var msg []byte
	msg = append(msg, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	chunk := make([]byte, 1000)
	for i := range chunk {
		chunk[i] = 'a' + byte(i%26)
	}
	for range 16 {
		msg = append(msg, "3e8\r\n"...)
		msg = append(msg, chunk...)
		msg = append(msg, "\r\n"...)
	}
	msg = append(msg, "0\r\n\r\n"...)
	r := NewReader(&loopReader{msg: msg}, Limits{})
	var resp Response
	get := []byte("GET")
	b.SetBytes(16 * 1000)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadResponse(&resp); err != nil {
			b.Fatal(err)
		}
		n, err := r.Body(resp.BodyLength(get)).CopyTo(io.Discard, nil)
		if err != nil || n != 16000 {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkAppendResponseHead(b *testing.B) {
	resp := Response{Status: 200, Header: fields("Content-Type", "text/html; charset=utf-8", "Content-Length", "12", "Date", "Sat, 28 Nov 2026 09:00:00 GMT")}
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendResponseHead(dst[:0], &resp)
	}
}

// BenchmarkReadRequestBodyFullBuffer reads requests whose head nearly
// fills the first buffer, so that the body moves to another one.
func BenchmarkReadRequestBodyFullBuffer(b *testing.B) {
	msg := "POST /x HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", bufSize-300) +
		"\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("b", 1000)
	r := NewReader(&loopReader{msg: []byte(msg)}, Limits{})
	var req Request
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadRequest(&req); err != nil {
			b.Fatal(err)
		}
		if n, err := r.Body(req.ContentLength, req.Chunked).CopyTo(io.Discard, nil); err != nil || n != 1000 {
			b.Fatal(n, err)
		}
	}
}
