package h1

import "io"

// AppendRequestHead appends a request line (HTTP/1.1) and fs, then the
// blank line, to dst. The fields are written as they are: framing fields
// are the caller's.
func AppendRequestHead(dst, method, target []byte, fs Fields) []byte {
	panic("h1: not implemented")
}

// AppendResponseHead appends resp's status line (HTTP/1.1; the standard
// reason phrase when resp.Reason is empty) and fields, then the blank
// line, to dst. The fields are written as they are.
func AppendResponseHead(dst []byte, resp *Response) []byte {
	panic("h1: not implemented")
}

// RemoveHopByHop deletes the fields that belong to one connection (RFC
// 9110 §7.6.1): Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Upgrade and Trailer. The
// caller keeps Upgrade when it forwards a protocol switch.
func RemoveHopByHop(fs *Fields) { panic("h1: not implemented") }

// ChunkedWriter writes a body in chunked coding to w.
type ChunkedWriter struct {
	// TODO(h1): implementation.
	w io.Writer
}

// Reset makes c write to w.
func (c *ChunkedWriter) Reset(w io.Writer) { c.w = w }

// Write writes p as one chunk (nothing for an empty p).
func (c *ChunkedWriter) Write(p []byte) (int, error) { panic("h1: not implemented") }

// Close writes the last chunk and the trailer section fs (may be empty).
func (c *ChunkedWriter) Close(trailer Fields) error { panic("h1: not implemented") }
