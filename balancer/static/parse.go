package static

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"berth/balancer/h1"
)

// cleanPath turns a request path ("/css/app.css") into a name under the
// root ("css/app.css"); a path ending in / names that directory's
// index.html. It reports false for a path this link does not look up:
// not absolute, a malformed escape, a NUL byte, an empty segment, or a
// segment that begins with a dot other than a leading ".well-known".
// The name is p's own bytes when it can be, else appended to dst: a
// request for an app route costs no allocation here.
func cleanPath(dst, p []byte) ([]byte, bool) {
	if len(p) == 0 || p[0] != '/' {
		return nil, false
	}
	var b []byte
	if bytes.IndexByte(p, '%') >= 0 {
		var ok bool
		if b, ok = unescape(p); !ok {
			return nil, false
		}
	} else {
		b = p
	}
	b = b[1:]
	dir := len(b) == 0 || b[len(b)-1] == '/'
	if dir && len(b) > 0 {
		b = b[:len(b)-1]
	}
	for start, i := 0, 0; len(b) > 0 && start <= len(b); i++ {
		end := bytes.IndexByte(b[start:], '/')
		if end < 0 {
			end = len(b)
		} else {
			end += start
		}
		seg := b[start:end]
		if len(seg) == 0 || bytes.IndexByte(seg, 0) >= 0 {
			return nil, false
		}
		if seg[0] == '.' && !(i == 0 && string(seg) == ".well-known") {
			return nil, false
		}
		start = end + 1
	}
	switch {
	case len(b) == 0:
		return append(dst, "index.html"...), true
	case dir:
		return append(append(dst, b...), "/index.html"...), true
	}
	return b, true
}

// unescape decodes %XX escapes; '+' stays as it is in a path.
func unescape(p []byte) ([]byte, bool) {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			out = append(out, p[i])
			continue
		}
		if i+2 >= len(p) {
			return nil, false
		}
		h, ok1 := unhex(p[i+1])
		l, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return nil, false
		}
		out = append(out, h<<4|l)
		i += 2
	}
	return out, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// accepts reports whether an Accept-Encoding value admits the coding
// token: named (or "*") without q=0.
func accepts(ae []byte, token string) bool {
	star := false
	for len(ae) > 0 {
		var item []byte
		if j := bytes.IndexByte(ae, ','); j >= 0 {
			item, ae = ae[:j], ae[j+1:]
		} else {
			item, ae = ae, nil
		}
		name, params, _ := bytes.Cut(item, []byte(";"))
		name = bytes.TrimSpace(name)
		zero := qZero(params)
		switch {
		case h1.EqualFold(name, token):
			return !zero
		case len(name) == 1 && name[0] == '*':
			star = !zero
		}
	}
	return star
}

// qZero reports whether parameters set q to 0 (q=0, q=0.0, …).
func qZero(params []byte) bool {
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		k, v, ok := bytes.Cut(bytes.TrimSpace(p), []byte("="))
		if !ok || !h1.EqualFold(bytes.TrimSpace(k), "q") {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || v[0] != '0' {
			return false
		}
		for _, c := range v[1:] {
			if c != '.' && c != '0' {
				return false
			}
		}
		return true
	}
	return false
}

// notModified reports whether the request's validators say the client's
// copy is current (RFC 9110 §13.2.2): If-None-Match when present (weak
// comparison), else If-Modified-Since.
func notModified(h h1.Fields, etag []byte, mod time.Time) bool {
	if h.Has("If-None-Match") {
		for _, f := range h {
			if h1.EqualFold(f.Name, "If-None-Match") && etagListMatch(f.Value, etag, false) {
				return true
			}
		}
		return false
	}
	v := h.Get("If-Modified-Since")
	if v == nil {
		return false
	}
	t, err := http.ParseTime(string(v))
	if err != nil {
		return false
	}
	return !mod.Truncate(time.Second).After(t)
}

// etagListMatch reports whether a list of entity tags (or "*") holds
// etag; strong comparison refuses weak tags.
func etagListMatch(list, etag []byte, strong bool) bool {
	list = bytes.TrimSpace(list)
	if len(list) == 1 && list[0] == '*' {
		return true
	}
	for len(list) > 0 {
		var item []byte
		if j := bytes.IndexByte(list, ','); j >= 0 {
			item, list = list[:j], list[j+1:]
		} else {
			item, list = list, nil
		}
		item = bytes.TrimSpace(item)
		if bytes.HasPrefix(item, []byte("W/")) {
			if strong {
				continue
			}
			item = item[2:]
		}
		if bytes.Equal(item, etag) {
			return true
		}
	}
	return false
}

// ifRange reports whether a Range may be honoured given If-Range: absent,
// the current entity tag (strong), or the exact Last-Modified date.
func ifRange(v, etag, lastMod []byte) bool {
	switch {
	case v == nil:
		return true
	case len(v) > 0 && (v[0] == '"' || bytes.HasPrefix(v, []byte("W/"))):
		return etagListMatch(v, etag, true) && !bytes.Equal(bytes.TrimSpace(v), []byte("*"))
	default:
		return bytes.Equal(bytes.TrimSpace(v), lastMod)
	}
}

// parseRange reads a Range value for a representation of size bytes.
// ok is false when the value is malformed, not in bytes, or asks for
// several ranges (the whole file is served then). For one range, it
// returns the offset and length, or length -1 when the range is not
// satisfiable (416).
func parseRange(v []byte, size int64) (off, n int64, ok bool) {
	spec, found := bytes.CutPrefix(bytes.TrimSpace(v), []byte("bytes="))
	if !found || bytes.IndexByte(spec, ',') >= 0 {
		return 0, 0, false
	}
	first, last, found := bytes.Cut(bytes.TrimSpace(spec), []byte("-"))
	if !found {
		return 0, 0, false
	}
	if len(first) == 0 {
		// Suffix: the last N bytes.
		k, err := parseUint(last)
		if err != nil {
			return 0, 0, false
		}
		if k == 0 || size == 0 {
			return 0, -1, true
		}
		k = min(k, size)
		return size - k, k, true
	}
	a, err := parseUint(first)
	if err != nil {
		return 0, 0, false
	}
	b := int64(-1)
	if len(last) > 0 {
		if b, err = parseUint(last); err != nil || b < a {
			return 0, 0, false
		}
	}
	if a >= size {
		return 0, -1, true
	}
	if b < 0 || b >= size {
		b = size - 1
	}
	return a, b - a + 1, true
}

func parseUint(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, strconv.ErrRange
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// Fingerprinted reports whether a file name carries a content hash, so
// that its content never changes under that name: a part of the last
// segment after '-', '.' or '_' of 8 or more ASCII letters, digits, or
// '_', with at least one digit ("app-3f9a1c2b.js", "main.5e6b7c8d9a.css",
// "index-B4x9_kQ2.js"). "bootstrap.min.js" is not.
func Fingerprinted(name string) bool {
	base := name[strings.LastIndexByte(name, '/')+1:]
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base = base[:i] // the extension is never the hash
	}
	for i := 0; i < len(base); i++ {
		if c := base[i]; c != '-' && c != '.' && c != '_' {
			continue
		}
		j, digit := i+1, false
		for j < len(base) && isHashByte(base[j]) {
			digit = digit || '0' <= base[j] && base[j] <= '9'
			j++
		}
		if j-i-1 >= 8 && digit {
			return true
		}
	}
	return false
}

func isHashByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
}
