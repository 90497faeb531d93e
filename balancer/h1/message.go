package h1

import "bytes"

// Field is one header field as it came on the wire (or as a link of the
// handler chain added it). Name keeps the sender's case; comparisons are
// case-insensitive.
type Field struct {
	Name, Value []byte
}

// Fields is a header section in wire order. Its methods look names up
// case-insensitively; it is a slice so that parsing reuses its backing
// array from one message to the next.
type Fields []Field

// Get returns the value of the first field named name, or nil.
func (fs Fields) Get(name string) []byte {
	for i := range fs {
		if EqualFold(fs[i].Name, name) {
			return fs[i].Value
		}
	}
	return nil
}

// Has reports whether a field named name is present.
func (fs Fields) Has(name string) bool {
	for i := range fs {
		if EqualFold(fs[i].Name, name) {
			return true
		}
	}
	return false
}

// HasToken reports whether any field named name carries token in its
// comma-separated list (case-insensitive, optional whitespace trimmed), as
// Connection, Transfer-Encoding and Cache-Control do.
func (fs Fields) HasToken(name, token string) bool {
	for i := range fs {
		if !EqualFold(fs[i].Name, name) {
			continue
		}
		v := fs[i].Value
		for len(v) > 0 {
			var item []byte
			item, v = NextItem(v, ',')
			if EqualFold(trimOWS(item), token) {
				return true
			}
		}
	}
	return false
}

// Del removes every field named name, keeping the order of the rest.
func (fs *Fields) Del(name string) {
	out := (*fs)[:0]
	for _, f := range *fs {
		if !EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	clear((*fs)[len(out):])
	*fs = out
}

// Add appends a field. The slices are kept, not copied.
func (fs *Fields) Add(name, value []byte) {
	*fs = append(*fs, Field{Name: name, Value: value})
}

// Set replaces every field named name by one field with value.
func (fs *Fields) Set(name, value []byte) {
	fs.Del(string(name))
	fs.Add(name, value)
}

// Request is a parsed request head.
type Request struct {
	// Method, Target and the fields are slices of the Reader's buffer.
	Method []byte
	// Target is the request-target as sent: origin-form ("/p?q"),
	// absolute-form ("http://h/p"), authority-form or "*".
	Target []byte
	// Minor is the minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
	Minor  int
	Header Fields

	// ContentLength is the body's length: 0 when there is no body, -1 when
	// it is chunked.
	ContentLength int64
	// Chunked reports whether the body is in chunked coding (the only
	// Transfer-Encoding accepted, and only last).
	Chunked bool
	// KeepAlive reports whether the client lets the connection carry
	// another request (HTTP/1.1 without Connection: close, or HTTP/1.0 with
	// Connection: keep-alive).
	KeepAlive bool
	// Upgrade reports a protocol switch request: Connection: upgrade with
	// an Upgrade field.
	Upgrade bool
	// ExpectContinue reports Expect: 100-continue (HTTP/1.1 only).
	ExpectContinue bool
}

// Path is Target up to the query ('?'), or Target.
func (r *Request) Path() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[:i]
	}
	return r.Target
}

// Query is what follows '?' in Target, without it; nil when there is none.
func (r *Request) Query() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[i+1:]
	}
	return nil
}

// Host is the Host field's value, or nil when the request has none.
func (r *Request) Host() []byte { return r.Header.Get("Host") }

// Response is a parsed (or composed) response head.
type Response struct {
	// Minor is the minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
	Minor  int
	Status int
	// Reason is the reason phrase; empty means the standard one for Status.
	Reason []byte
	Header Fields

	// ContentLength is the body's length: -1 when it is chunked or runs
	// until the connection closes (Chunked tells which). For a response
	// that has no body by its status (1xx, 204, 304) or the request's
	// method (HEAD), the reader of the body must be told: see BodyLength.
	ContentLength int64
	// Chunked reports whether the body is in chunked coding.
	Chunked bool
	// KeepAlive reports whether the server lets the connection carry
	// another exchange.
	KeepAlive bool
}

// NoBody reports whether a response with this status never has a body
// (RFC 9112 §6.3): 1xx, 204 and 304.
func NoBody(status int) bool {
	return status/100 == 1 || status == 204 || status == 304
}

// BodyLength is the framing of the body that follows resp in answer to a
// request with method (RFC 9112 §6.3): none for a HEAD request, a 1xx, 204
// or 304 response, or a 2xx answer to CONNECT; else resp.ContentLength
// and resp.Chunked. Pass its results to Reader.Body.
func (resp *Response) BodyLength(method []byte) (n int64, chunked bool) {
	switch {
	case NoBody(resp.Status), string(method) == "HEAD",
		string(method) == "CONNECT" && resp.Status/100 == 2:
		return 0, false
	}
	return resp.ContentLength, resp.Chunked
}

// EqualFold reports whether b and s are equal under ASCII case folding,
// as field names and tokens compare; it allocates nothing.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// NextItem splits the first item off a sep-separated list (a field value
// such as "gzip, br" or a Cookie's "a=1; b=2"): item is what comes before
// the first sep (all of v when there is none), rest what follows it. Items
// are not trimmed.
func NextItem(v []byte, sep byte) (item, rest []byte) {
	if j := bytes.IndexByte(v, sep); j >= 0 {
		return v[:j], v[j+1:]
	}
	return v, nil
}
