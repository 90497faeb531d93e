package h1

import (
	"errors"
	"io"
)

// Body modes.
const (
	modeFixed   uint8 = iota // b.left bytes
	modeChunked              // chunked coding
	modeClose                // until the connection ends
)

// Chunked states.
const (
	stSize uint8 = iota // a chunk-size line comes next
	stData              // chunk data, b.left bytes of it
	stCRLF              // the CRLF after chunk data
)

// next returns the body bytes buffered now (reading when there are none),
// without consuming them: consume says how many were used. flush, if not
// nil, is called before every read.
func (b *Body) next(flush func() error) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.done {
		return nil, io.EOF
	}
	r := b.r
	switch b.mode {
	case modeFixed:
		if r.r == r.w {
			if err := b.wait(flush); err != nil {
				return nil, b.fail(err)
			}
		}
		return b.limited(r.buf[r.r : r.r+int(min(int64(r.w-r.r), b.left))])
	case modeClose:
		if r.r == r.w {
			if err := b.wait(flush); err == io.EOF {
				b.finish()
				return nil, io.EOF
			} else if err != nil {
				return nil, b.fail(err)
			}
		}
		return b.limited(r.buf[r.r:r.w])
	}
	for {
		switch b.st {
		case stSize:
			size, err := b.chunkSize(flush)
			if err != nil {
				return nil, b.fail(err)
			}
			if size == 0 {
				start, end, err := r.readHead(kindTrailer, flush)
				if err != nil {
					return nil, b.fail(err)
				}
				if err := parseFields(r.buf[start:end], &b.trailer, nil, trailerError); err != nil {
					return nil, b.fail(err)
				}
				dropForbiddenTrailers(&b.trailer)
				b.finish()
				return nil, io.EOF
			}
			b.left, b.st = size, stData
		case stData:
			if r.r == r.w {
				if err := b.wait(flush); err != nil {
					return nil, b.fail(err)
				}
			}
			return b.limited(r.buf[r.r : r.r+int(min(int64(r.w-r.r), b.left))])
		case stCRLF:
			for r.w-r.r < 2 {
				if err := b.wait(flush); err != nil {
					return nil, b.fail(err)
				}
			}
			if r.buf[r.r] != '\r' || r.buf[r.r+1] != '\n' {
				return nil, b.fail(&Error{Status: 400, Reason: "chunked: chunk data not followed by CRLF"})
			}
			r.r += 2
			b.st = stSize
		}
	}
}

// consume marks n bytes that next returned as used.
func (b *Body) consume(n int) {
	b.r.r += n
	b.total += int64(n)
	if b.mode == modeClose {
		return
	}
	b.left -= int64(n)
	if b.left > 0 {
		return
	}
	if b.mode == modeFixed {
		b.finish()
	} else {
		b.st = stCRLF
	}
}

// limited applies SetLimit to data about to be returned.
func (b *Body) limited(data []byte) ([]byte, error) {
	if b.limit > 0 {
		rem := b.limit - b.total
		if rem <= 0 {
			return nil, b.fail(ErrBodyTooLarge)
		}
		if int64(len(data)) > rem {
			data = data[:rem]
		}
	}
	return data, nil
}

// wait reads more of the body from the connection; the connection ending
// before the body does is io.ErrUnexpectedEOF, except for a body that runs
// until then.
func (b *Body) wait(flush func() error) error {
	if flush != nil {
		if err := flush(); err != nil {
			return err
		}
	}
	err := b.r.fill()
	if err == io.EOF && b.mode != modeClose {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (b *Body) finish() {
	b.done = true
	b.r.unread = false
}

func (b *Body) fail(err error) error {
	b.err = err
	return err
}

func trailerError(_ int, reason string) *Error {
	return &Error{Status: 400, Reason: "chunked trailer: " + reason}
}

// chunkSize reads a chunk-size line (RFC 9112 §7.1): chunk-size
// [ chunk-ext ] CRLF, where chunk-size is 1*HEXDIG (at most 15 digits, so
// that it fits an int64) and chunk-ext = *( BWS ";" BWS ext-name
// [ BWS "=" BWS ext-val ] ), ignored here but kept to field-value
// characters.
func (b *Body) chunkSize(flush func() error) (int64, error) {
	line, err := b.r.readLine(maxChunkLine, flush)
	if err != nil {
		return 0, err
	}
	var size int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i == 15 {
			return 0, &Error{Status: 400, Reason: "chunked: chunk size too large"}
		}
		size = size<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, &Error{Status: 400, Reason: "chunked: malformed chunk size"}
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 {
		if rest[0] != ';' {
			return 0, &Error{Status: 400, Reason: "chunked: malformed chunk size"}
		}
		for _, c := range rest {
			if class[c]&cValue == 0 {
				return 0, &Error{Status: 400, Reason: "chunked: invalid character in chunk extension"}
			}
		}
	}
	return size, nil
}

// readDirect reads body content from the connection straight into a p at
// least as large as the buffer, when nothing is buffered and the body is
// in content (not in chunk framing). It reports false when it did not
// apply or read nothing; the connection's error is then kept for next.
func (b *Body) readDirect(p []byte) (int, bool) {
	r := b.r
	if len(p) < bufSize || r.r != r.w || r.err != nil || b.err != nil || b.done ||
		b.limit > 0 || b.mode == modeChunked && b.st != stData {
		return 0, false
	}
	if b.mode != modeClose && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := r.rd.Read(p)
	if n < 0 || n > len(p) {
		n, err = 0, errors.New("h1: connection returned an invalid count from Read")
	}
	if err != nil {
		r.err = err
	}
	if n == 0 {
		return 0, false
	}
	b.total += int64(n)
	if b.mode != modeClose {
		b.left -= int64(n)
		if b.left == 0 {
			if b.mode == modeFixed {
				b.finish()
			} else {
				b.st = stCRLF
			}
		}
	}
	return n, true
}

// dropForbiddenTrailers removes from a trailer section the fields that
// frame, route or belong to the connection (RFC 9110 §6.5.1), which a
// sender must not put there: passed on, they could be merged into a
// header section by a careless recipient.
func dropForbiddenTrailers(fs *Fields) {
	out := (*fs)[:0]
	for _, f := range *fs {
		if !hopByHop(f.Name) && !EqualFold(f.Name, "content-length") && !EqualFold(f.Name, "host") {
			out = append(out, f)
		}
	}
	clear((*fs)[len(out):])
	*fs = out
}
