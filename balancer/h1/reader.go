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
//
// The buffer starts at 4 KiB, taken from a shared pool at the first read,
// and grows up to Limits.MaxHeaderBytes only for a head that needs it;
// Release gives it back while the connection is idle. A Reader is not safe
// for concurrent use.
type Reader struct {
	rd  io.Reader
	lim Limits

	// buf[r:w] is read and not yet consumed. Bytes below floor belong to
	// the current head (its slices point there) and are never moved or
	// overwritten while its body is read.
	buf         []byte
	r, w, floor int
	size        int            // the buffer to start with, if over bufSize
	pooled      *[bufSize]byte // buf's array when it came from bufPool
	retired     *[bufSize]byte // a pooled array the current head still points into
	err         error          // the connection's error, returned once the buffer is drained

	body Body
	// unread reports that the last request has a body that was not read to
	// its end: ReadRequest refuses to take its bytes for a new request.
	unread bool
}

// NewReader returns a Reader on rd.
func NewReader(rd io.Reader, lim Limits) *Reader {
	r := &Reader{}
	r.lim = lim
	r.Reset(rd)
	return r
}

// NewReaderSize is NewReader with a buffer of size bytes of its own (not
// pooled) when size is larger than the default 4 KiB: for connections
// that carry bodies of several KiB, such as a proxy's to its workers, so
// that a response of a few KiB arrives in one read.
func NewReaderSize(rd io.Reader, lim Limits, size int) *Reader {
	r := NewReader(rd, lim)
	if size > bufSize {
		r.size = size
	}
	return r
}

// Reset makes r read from rd, dropping anything buffered; for reuse from a
// pool.
func (r *Reader) Reset(rd io.Reader) {
	r.rd = rd
	r.lim = r.lim.withDefaults()
	r.r, r.w, r.floor = 0, 0, 0
	r.err = nil
	r.unread = false
	r.body = Body{trailer: r.body.trailer[:0]}
}

// Release gives r's buffer back to the shared pool when nothing is
// buffered, so that an idle connection holds none; the next read takes one
// again. It invalidates the slices of the last head and trailer. It does
// nothing while bytes are buffered.
func (r *Reader) Release() {
	if r.r != r.w || r.buf == nil {
		return
	}
	if r.pooled != nil {
		bufPool.Put(r.pooled)
	}
	if r.retired != nil {
		bufPool.Put(r.retired)
	}
	r.buf, r.pooled, r.retired = nil, nil, nil
	r.r, r.w, r.floor = 0, 0, 0
}

// Fill reads once from the connection into the buffer, waiting for at
// least one byte: for a caller that makes the read itself begin
// something (sockio.Conn.Stage). An error is also kept for the next read
// to report. It is the start of the next head, as ReadRequest and
// ReadResponse are: the previous head's slices are invalid from here.
// (Protecting them would let each message start where the last head
// ended, creeping up the buffer until it had to move to a new array.)
func (r *Reader) Fill() error {
	r.unprotect()
	return r.fill()
}

// Buffered is the number of bytes read from the connection and not yet
// consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// ReadRequest reads the next request head into req, reusing req's field
// slice. It returns io.EOF when the connection ends cleanly before a
// request begins, an *Error for a head it refuses (the caller answers
// Error.Status and closes), or the connection's error.
//
// It refuses (with an error that is not an *Error) to start while the
// previous request's body has not been read to its end, since its bytes
// would be taken for a request.
func (r *Reader) ReadRequest(req *Request) error {
	if r.unread {
		return errBodyUnread
	}
	start, end, err := r.readHead(kindRequest, nil)
	if err != nil {
		return err
	}
	if err := parseRequest(req, r.buf[start:end], &r.lim); err != nil {
		return err
	}
	r.unread = req.Chunked || req.ContentLength > 0
	return nil
}

// ReadResponse reads the next response head into resp (interim 1xx
// responses included: the caller loops).
//
// A refused response head is an *Error with Status 502 (what the client of
// the exchange is answered). A response with both Transfer-Encoding and
// Content-Length is framed by Transfer-Encoding, its Content-Length fields
// are removed from resp.Header and KeepAlive is false (RFC 9112 §6.3).
func (r *Reader) ReadResponse(resp *Response) error {
	start, end, err := r.readHead(kindResponse, nil)
	if err != nil {
		return err
	}
	return parseResponse(resp, r.buf[start:end], &r.lim)
}

// Body returns the reader of the current message's body: n bytes when
// n >= 0, chunked coding when chunked, else everything until the
// connection ends. It reads through r's buffer, is owned by r, and is
// valid until the next head is read.
func (r *Reader) Body(n int64, chunked bool) *Body {
	b := &r.body
	*b = Body{r: r, trailer: b.trailer[:0]}
	switch {
	case chunked:
		b.mode = modeChunked
		b.st = stSize
	case n >= 0:
		b.mode = modeFixed
		b.left = n
		b.done = n == 0
	default:
		b.mode = modeClose
	}
	r.unread = !b.done
	return b
}

// Body reads one message's body, decoding chunked coding. A malformed
// chunked body is an *Error with Status 400.
type Body struct {
	r    *Reader
	mode uint8
	st   uint8 // chunked: what comes next
	done bool
	err  error // sticky
	// left is what remains of a fixed body or of the current chunk.
	left         int64
	limit, total int64
	trailer      Fields
}

// Read implements io.Reader; it returns io.EOF at the body's end.
func (b *Body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == nil {
		return 0, io.EOF
	}
	if n, ok := b.readDirect(p); ok {
		return n, nil
	}
	data, err := b.next(nil)
	if err != nil {
		return 0, err
	}
	n := copy(p, data)
	b.consume(n)
	return n, nil
}

// WriteTo is CopyTo without flushing, for io.Copy.
func (b *Body) WriteTo(w io.Writer) (int64, error) { return b.CopyTo(w, nil) }

// CopyTo writes the rest of the body to w straight from the Reader's
// buffer, and calls flush (if not nil) before every read that has to wait
// for the connection, so a streamed body reaches w's client as it comes.
func (b *Body) CopyTo(w io.Writer, flush func() error) (int64, error) {
	if b.r == nil {
		return 0, nil
	}
	var written int64
	for {
		data, err := b.next(flush)
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, err
		}
		n, err := w.Write(data)
		written += int64(n)
		b.consume(n)
		if err != nil {
			return written, err
		}
		if n < len(data) {
			return written, io.ErrShortWrite
		}
	}
}

// Done reports whether the whole body has been read (its end seen).
func (b *Body) Done() bool { return b.r == nil || b.done }

// Trailer is the chunked body's trailer section, valid once Read returned
// io.EOF. Fields a trailer must not carry (RFC 9110 §6.5.1: framing,
// Host, hop-by-hop fields) are left out.
func (b *Body) Trailer() Fields { return b.trailer }

// SetLimit makes the body fail with ErrBodyTooLarge once more than max
// bytes of content were read (max <= 0: no limit).
func (b *Body) SetLimit(max int64) { b.limit = max }
