package h1

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

const (
	// bufSize is the buffer a Reader starts with: a typical browser
	// request head (500–1500 bytes) fits with room for a small body.
	bufSize = 4 << 10
	// minRoom is the least free space fill reads into; with less, it
	// compacts or moves to a larger array.
	minRoom = 512
	// maxChunkLine bounds a chunk-size line, extensions included.
	maxChunkLine = 4 << 10
)

// bufPool holds idle Readers' 4 KiB buffers (see Reader.Release). It is
// the package's only shared value, and sync.Pool is safe for concurrent
// use by design.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

var errBodyUnread = errors.New("h1: previous request's body not read to its end")

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxRequestLine <= 0 {
		l.MaxRequestLine = DefaultMaxRequestLine
	}
	if l.MaxFields <= 0 {
		l.MaxFields = DefaultMaxFields
	}
	return l
}

// fill reads once more from the connection into the buffer, after making
// room: it compacts buf[r:w] down to floor, or moves it to a larger array
// (the old one stays with the slices that point into it). It returns the
// connection's error only when it read nothing; an error that came with
// data is kept for the next call, and so is every error but one that
// says the read would wait.
func (r *Reader) fill() error {
	if r.err != nil {
		return r.err
	}
	if r.buf == nil {
		if r.size > bufSize {
			r.buf, r.pooled = make([]byte, r.size), nil
		} else {
			p := bufPool.Get().(*[bufSize]byte)
			r.buf, r.pooled = p[:], p
		}
		r.r, r.w, r.floor = 0, 0, 0
	}
	if r.r == r.w {
		r.r, r.w = r.floor, r.floor
	}
	if len(r.buf)-r.w < minRoom {
		if r.r > r.floor {
			n := copy(r.buf[r.floor:], r.buf[r.r:r.w])
			r.r, r.w = r.floor, r.floor+n
		}
		if len(r.buf)-r.w < minRoom {
			r.move()
		}
	}
	for range 100 {
		n, err := r.rd.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			return errors.New("h1: connection returned an invalid count from Read")
		}
		r.w += n
		if err != nil {
			if n == 0 && wouldBlock(err) {
				return err // not kept: the read can be made again
			}
			r.err = err
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return io.ErrNoProgress
}

// wouldBlock reports whether err says a read found nothing yet and
// would wait (sockio's ErrWouldBlock, inside a turn that waits for the
// socket itself): such an error is returned, not kept.
// It is asked on every wait, so it is not unwrapped.
func wouldBlock(err error) bool {
	wb, ok := err.(interface{ WouldBlock() bool })
	return ok && wb.WouldBlock()
}

// move puts buf[r:w] at the start of a new array with at least minRoom
// free, dropping the protection of the bytes below floor (they stay in
// the old array, where the current head's slices keep pointing).
func (r *Reader) move() {
	un := r.w - r.r
	size := max(bufSize, len(r.buf))
	for size < un+minRoom {
		size *= 2
	}
	var nb []byte
	var pooled *[bufSize]byte
	if size == bufSize {
		pooled = bufPool.Get().(*[bufSize]byte)
		nb = pooled[:]
	} else {
		nb = make([]byte, size)
	}
	copy(nb, r.buf[r.r:r.w])
	if r.pooled != nil {
		if r.floor == 0 {
			// Nothing points into the old array any more.
			bufPool.Put(r.pooled)
		} else {
			// The head still does, until the next one is read.
			r.retired = r.pooled
		}
	}
	r.buf, r.pooled = nb, pooled
	r.r, r.w, r.floor = 0, un, 0
}

type headKind uint8

const (
	kindRequest headKind = iota
	kindResponse
	kindTrailer
)

// unprotect ends the protection of the previous head, whose slices are
// invalid from here: a new head is about to be read. With nothing
// buffered, the next read starts at the bottom of the buffer again.
func (r *Reader) unprotect() {
	r.floor = 0
	if r.retired != nil {
		bufPool.Put(r.retired)
		r.retired = nil
	}
	if r.r == r.w && r.buf != nil {
		r.r, r.w = 0, 0
	}
}

// readHead finds the end of a head (or trailer section) that starts at r.r,
// reading as needed, and consumes it: buf[start:end] is the head, ending
// in its empty line. Every line must end in CRLF. A request may be preceded
// by one empty line (RFC 9112 §2.2).
func (r *Reader) readHead(kind headKind, flush func() error) (start, end int, err error) {
	lim := &r.lim
	if kind != kindTrailer {
		r.unprotect()
	}
	start, scan, lineStart := r.r, r.r, r.r
	lines, skipped := 0, 0
	for {
		i := bytes.IndexByte(r.buf[scan:r.w], '\n')
		if i < 0 {
			if kind == kindRequest && lines == 0 {
				if r.w > lineStart && !isTchar(r.buf[lineStart]) && r.buf[lineStart] != '\r' {
					return 0, 0, &Error{Status: 400, Reason: "malformed request line"}
				}
				n := r.w - lineStart
				if n > 0 && r.buf[r.w-1] == '\r' {
					n-- // the CR of a line whose LF is still to come
				}
				if n > lim.MaxRequestLine {
					return 0, 0, &Error{Status: 414, Reason: "request line too long"}
				}
			}
			if r.w-start >= lim.MaxHeaderBytes {
				return 0, 0, headError(kind, 431, "header section too large")
			}
			old := r.r
			if flush != nil {
				if err := flush(); err != nil {
					return 0, 0, err
				}
			}
			err := r.fill()
			d := r.r - old
			start, scan, lineStart = start+d, scan+d, lineStart+d
			if err != nil {
				if err == io.EOF && (r.w > start || kind == kindTrailer) {
					err = io.ErrUnexpectedEOF
				}
				return 0, 0, err
			}
			continue
		}
		lf := scan + i
		scan = lf + 1
		if lf == lineStart || r.buf[lf-1] != '\r' {
			return 0, 0, headError(kind, 400, "line not ended by CRLF")
		}
		if lf-1 == lineStart { // empty line
			if lines == 0 && kind == kindRequest {
				if skipped > 0 {
					return 0, 0, &Error{Status: 400, Reason: "empty lines before request line"}
				}
				skipped++
				start, lineStart = scan, scan
				r.r = scan
				continue
			}
			if scan-start > lim.MaxHeaderBytes {
				return 0, 0, headError(kind, 431, "header section too large")
			}
			r.r = scan
			if kind != kindTrailer {
				r.floor = scan
			}
			return start, scan, nil
		}
		if kind == kindRequest && lines == 0 && lf-1-lineStart > lim.MaxRequestLine {
			return 0, 0, &Error{Status: 414, Reason: "request line too long"}
		}
		lines++
		if kind == kindTrailer {
			if lines > lim.MaxFields {
				return 0, 0, headError(kind, 431, "too many fields")
			}
		} else if lines-1 > lim.MaxFields {
			return 0, 0, headError(kind, 431, "too many header fields")
		}
		lineStart = scan
	}
}

// headError is the error for a refused head: a request's own status, 502
// for a worker's response, 400 for a chunked body's trailer.
func headError(kind headKind, status int, reason string) *Error {
	switch kind {
	case kindResponse:
		return &Error{Status: 502, Reason: "response: " + reason}
	case kindTrailer:
		return &Error{Status: 400, Reason: "chunked trailer: " + reason}
	}
	return &Error{Status: status, Reason: reason}
}

// readLine returns the next CRLF-ended line of at most max bytes, without
// its CRLF, and consumes it. The line is valid until the next fill.
func (r *Reader) readLine(max int, flush func() error) ([]byte, error) {
	scan := r.r
	for {
		if i := bytes.IndexByte(r.buf[scan:r.w], '\n'); i >= 0 {
			lf := scan + i
			if lf == r.r || r.buf[lf-1] != '\r' {
				return nil, &Error{Status: 400, Reason: "chunked: line not ended by CRLF"}
			}
			if lf-r.r > max {
				return nil, &Error{Status: 400, Reason: "chunked: chunk-size line too long"}
			}
			line := r.buf[r.r : lf-1]
			r.r = lf + 1
			return line, nil
		}
		if r.w-r.r >= max {
			return nil, &Error{Status: 400, Reason: "chunked: chunk-size line too long"}
		}
		off := r.w - r.r
		if flush != nil {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		if err := r.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		scan = r.r + off
	}
}
