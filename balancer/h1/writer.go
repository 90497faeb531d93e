package h1

import (
	"io"
	"net/http"
	"strconv"
)

// AppendRequestHead appends a request line (HTTP/1.1) and fs, then the
// blank line, to dst. The fields are written as they are: framing fields
// are the caller's.
func AppendRequestHead(dst, method, target []byte, fs Fields) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	return appendFields(dst, fs)
}

// AppendResponseHead appends resp's status line (HTTP/1.1; the standard
// reason phrase when resp.Reason is empty) and fields, then the blank
// line, to dst. The fields are written as they are.
func AppendResponseHead(dst []byte, resp *Response) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(resp.Status), 10)
	dst = append(dst, ' ')
	if len(resp.Reason) > 0 {
		dst = append(dst, resp.Reason...)
	} else {
		dst = append(dst, http.StatusText(resp.Status)...)
	}
	dst = append(dst, "\r\n"...)
	return appendFields(dst, resp.Header)
}

func appendFields(dst []byte, fs Fields) []byte {
	for _, f := range fs {
		dst = append(dst, f.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// RemoveHopByHop deletes the fields that belong to one connection (RFC
// 9110 §7.6.1): Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Upgrade and Trailer. The
// caller keeps Upgrade when it forwards a protocol switch.
//
// Connection naming Host or Content-Length does not remove them: a client
// must not be able to strip what routes or frames the request (the
// "Connection: Content-Length" trick).
func RemoveHopByHop(fs *Fields) {
	all := *fs
	// First mark (with a nil name) what Connection lists, while every
	// Connection field is still in place; then compact.
	if all.Has("Connection") {
		for i := range all {
			if !hopByHop(all[i].Name) && namedByConnection(all, all[i].Name) {
				all[i].Name = nil
			}
		}
	}
	out := all[:0]
	for _, f := range all {
		if f.Name != nil && !hopByHop(f.Name) {
			out = append(out, f)
		}
	}
	clear(all[len(out):])
	*fs = out
}

func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return EqualFold(name, "te")
	case 7:
		return EqualFold(name, "upgrade") || EqualFold(name, "trailer")
	case 10:
		return EqualFold(name, "connection") || EqualFold(name, "keep-alive")
	case 16:
		return EqualFold(name, "proxy-connection")
	case 17:
		return EqualFold(name, "transfer-encoding")
	}
	return false
}

// namedByConnection reports whether a Connection field of fs lists name.
func namedByConnection(fs Fields, name []byte) bool {
	if EqualFold(name, "host") || EqualFold(name, "content-length") {
		return false
	}
	for i := range fs {
		if !EqualFold(fs[i].Name, "connection") {
			continue
		}
		for v := fs[i].Value; len(v) > 0; {
			var item []byte
			item, v = nextItem(v)
			if equalFoldBytes(item, name) {
				return true
			}
		}
	}
	return false
}

// ChunkedWriter writes a body in chunked coding to w.
type ChunkedWriter struct {
	w   io.Writer
	buf []byte // chunk-size lines and the last chunk, reused
}

// Reset makes c write to w.
func (c *ChunkedWriter) Reset(w io.Writer) { c.w = w }

// Write writes p as one chunk (nothing for an empty p): the size line, p
// and the CRLF, in three writes to w (give it a buffered writer).
func (c *ChunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.buf = strconv.AppendUint(c.buf[:0], uint64(len(p)), 16)
	c.buf = append(c.buf, "\r\n"...)
	if _, err := c.w.Write(c.buf); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	if _, err := c.w.Write(c.buf[len(c.buf)-2:]); err != nil {
		return n, err
	}
	return n, nil
}

// Close writes the last chunk and the trailer section fs (may be empty).
func (c *ChunkedWriter) Close(trailer Fields) error {
	c.buf = append(c.buf[:0], "0\r\n"...)
	c.buf = appendFields(c.buf, trailer)
	_, err := c.w.Write(c.buf)
	return err
}

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		c, d := a[i], b[i]
		if c == d {
			continue
		}
		if lc := c | 0x20; lc != d|0x20 || lc < 'a' || lc > 'z' {
			return false
		}
	}
	return true
}
