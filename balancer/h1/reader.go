package h1

import (
	"errors"
	"io"
)

// Limits bound what a Reader accepts in a head. The zero value takes the
// defaults.
type Limits struct {
	// MaxHeaderBytes bounds the whole head, start line included; a larger
	// request head is refused with 431. If zero, DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxRequestLine bounds the request line; a longer one is refused with
	// 414. If zero, DefaultMaxRequestLine.
	MaxRequestLine int
	// MaxFields bounds the number of header fields; more are refused with
	// 431. If zero, DefaultMaxFields.
	MaxFields int
}

// Defaults for Limits: nginx's large_client_header_buffers (4 × 8 KiB)
// and Node's 16 KiB bracket them.
const (
	DefaultMaxHeaderBytes = 32 << 10
	DefaultMaxRequestLine = 8 << 10
	DefaultMaxFields      = 100
)

// Error is a message a Reader refuses. Status is what a server answers a
// client with (400, 414, 431, 501, 505); the connection must be closed
// after it, since where the message ends is unknown.
type Error struct {
	Status int
	// Reason says what was wrong, for logs and for the visitor's short
	// answer; it never quotes the message.
	Reason string
}

func (e *Error) Error() string { return "h1: " + e.Reason }

// ErrBodyTooLarge is returned by a Body limited with SetLimit when the
// body is longer than the limit.
var ErrBodyTooLarge = errors.New("h1: body too large")

// Reader reads HTTP/1.x messages from one connection through a buffer it
// owns. A parsed head's slices point into that buffer and stay valid until
// the next ReadRequest or ReadResponse.
type Reader struct {
	// TODO(h1): implementation.
	rd   io.Reader
	lim  Limits
	body Body
}

// NewReader returns a Reader on rd.
func NewReader(rd io.Reader, lim Limits) *Reader {
	r := &Reader{}
	r.lim = lim
	r.Reset(rd)
	return r
}

// Reset makes r read from rd, dropping anything buffered; for reuse from a
// pool.
func (r *Reader) Reset(rd io.Reader) { r.rd = rd }

// Buffered is the number of bytes read from the connection and not yet
// consumed.
func (r *Reader) Buffered() int { panic("h1: not implemented") }

// ReadRequest reads the next request head into req, reusing req's field
// slice. It returns io.EOF when the connection ends cleanly before a
// request begins, an *Error for a head it refuses (the caller answers
// Error.Status and closes), or the connection's error.
func (r *Reader) ReadRequest(req *Request) error { panic("h1: not implemented") }

// ReadResponse reads the next response head into resp (interim 1xx
// responses included: the caller loops).
func (r *Reader) ReadResponse(resp *Response) error { panic("h1: not implemented") }

// Body returns the reader of the current message's body: n bytes when
// n >= 0, chunked coding when chunked, else everything until the
// connection ends. It reads through r's buffer, is owned by r, and is
// valid until the next head is read.
func (r *Reader) Body(n int64, chunked bool) *Body { panic("h1: not implemented") }

// Body reads one message's body, decoding chunked coding. A malformed
// chunked body is an *Error with Status 400.
type Body struct {
	// TODO(h1): implementation.
}

// Read implements io.Reader; it returns io.EOF at the body's end.
func (b *Body) Read(p []byte) (int, error) { panic("h1: not implemented") }

// CopyTo writes the rest of the body to w straight from the Reader's
// buffer, and calls flush (if not nil) before every read that has to wait
// for the connection, so a streamed body reaches w's client as it comes.
func (b *Body) CopyTo(w io.Writer, flush func() error) (int64, error) {
	panic("h1: not implemented")
}

// Done reports whether the whole body has been read (its end seen).
func (b *Body) Done() bool { panic("h1: not implemented") }

// Trailer is the chunked body's trailer section, valid once Read returned
// io.EOF.
func (b *Body) Trailer() Fields { panic("h1: not implemented") }

// SetLimit makes the body fail with ErrBodyTooLarge once more than max
// bytes of content were read (max <= 0: no limit).
func (b *Body) SetLimit(max int64) { panic("h1: not implemented") }
