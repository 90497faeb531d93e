package h1

import (
	"bytes"
	"encoding/binary"
	"math"
)

// Byte classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar / obs-text).
const (
	cTchar  = 1 << iota // token character
	cValue              // allowed in a field value: HTAB, SP, VCHAR, obs-text
	cTarget             // allowed in a request-target: VCHAR, obs-text
	cHost               // reg-name: unreserved, pct-encoded, sub-delims (RFC 3986 §3.2.2)
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c == '\t' || c == ' ':
			t[c] = cValue
		case c > ' ' && c < 0x7f:
			t[c] = cValue | cTarget
		case c >= 0x80:
			t[c] = cValue | cTarget
		}
	}
	const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for _, c := range []byte("!#$%&'*+-.^_`|~" + alnum) {
		t[c] |= cTchar
	}
	for _, c := range []byte("-._~%!$&'()*+,;=" + alnum) {
		t[c] |= cHost
	}
	return t
}()

func isTchar(c byte) bool { return class[c]&cTchar != 0 }

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// validValue reports whether v holds only field-value bytes: HTAB, SP,
// VCHAR and obs-text (RFC 9110 §5.5). It looks at 8 bytes at a time and
// at single bytes only in a word with a byte below 0x20 or a DEL.
func validValue(v []byte) bool {
	for len(v) >= 8 {
		x := binary.LittleEndian.Uint64(v)
		// A byte of x below 0x20 (high bit clear), or equal to 0x7f.
		y := x ^ (0x7f * lo8)
		if ((x-0x20*lo8)&^x|(y-lo8)&^y)&hi8 != 0 {
			for _, c := range v[:8] {
				if class[c]&cValue == 0 {
					return false
				}
			}
		}
		v = v[8:]
	}
	for _, c := range v {
		if class[c]&cValue == 0 {
			return false
		}
	}
	return true
}

// fieldInfo is what the framing and connection rules need from a header
// section, gathered in the one pass that parses it.
type fieldInfo struct {
	hosts, cls, tes int
	hostBad         bool
	cl              int64
	clBad           bool
	// Transfer-Encoding, all fields taken as one list: whether it has a
	// coding, whether the last one is chunked, whether chunked appears
	// before the last, whether another coding appears.
	teAny, teLastChunked, teChunkedNotLast, teOther   bool
	close, keepAlive, connUpgrade, upgrade, expect100 bool
}

// parseFields parses the field lines of head (each ending in CRLF, the
// last one empty) into fs, reusing its backing array.
func parseFields(head []byte, fs *Fields, fi *fieldInfo, errf func(int, string) *Error) error {
	out := (*fs)[:0]
	for {
		i := bytes.IndexByte(head, '\n')
		line := head[:i-1]
		head = head[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errf(400, "obsolete line folding")
		}
		n := 0
		for n < len(line) && isTchar(line[n]) {
			n++
		}
		if n == 0 || n == len(line) || line[n] != ':' {
			return errf(400, "malformed field name")
		}
		name, value := line[:n], line[n+1:]
		if !validValue(value) {
			return errf(400, "invalid character in field value")
		}
		value = trimOWS(value)
		out = append(out, Field{Name: name, Value: value})
		if fi != nil {
			fi.note(name, value)
		}
	}
	*fs = out
	return nil
}

// note records what a field means for framing and the connection.
func (fi *fieldInfo) note(name, value []byte) {
	switch len(name) {
	case 4:
		if EqualFold(name, "host") {
			fi.hosts++
			fi.hostBad = fi.hostBad || !validHost(value)
		}
	case 6:
		if EqualFold(name, "expect") && EqualFold(value, "100-continue") {
			fi.expect100 = true
		}
	case 7:
		if EqualFold(name, "upgrade") {
			fi.upgrade = true
		}
	case 10:
		if EqualFold(name, "connection") {
			for v := value; len(v) > 0; {
				var item []byte
				item, v = nextItem(v)
				switch {
				case EqualFold(item, "close"):
					fi.close = true
				case EqualFold(item, "keep-alive"):
					fi.keepAlive = true
				case EqualFold(item, "upgrade"):
					fi.connUpgrade = true
				}
			}
		}
	case 14:
		if EqualFold(name, "content-length") {
			fi.cls++
			n, ok := parseContentLength(value)
			fi.cl, fi.clBad = n, fi.clBad || !ok
		}
	case 17:
		if EqualFold(name, "transfer-encoding") {
			fi.tes++
			for v := value; len(v) > 0; {
				var item []byte
				item, v = nextItem(v)
				if len(item) == 0 {
					continue
				}
				if fi.teLastChunked {
					fi.teChunkedNotLast = true
				}
				fi.teAny = true
				fi.teLastChunked = EqualFold(item, "chunked")
				if !fi.teLastChunked {
					fi.teOther = true
				}
			}
		}
	}
}

// nextItem splits the first element off a comma-separated list, OWS
// trimmed.
func nextItem(v []byte) (item, rest []byte) {
	if j := bytes.IndexByte(v, ','); j >= 0 {
		return trimOWS(v[:j]), v[j+1:]
	}
	return trimOWS(v), nil
}

// parseContentLength parses 1*DIGIT (RFC 9110 §8.6): no sign, no list, no
// whitespace inside, and no overflow.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func requestError(status int, reason string) *Error {
	return &Error{Status: status, Reason: reason}
}

func responseError(_ int, reason string) *Error {
	return &Error{Status: 502, Reason: "response: " + reason}
}

// parseRequest parses a request head (RFC 9112 §3, §5, §6).
func parseRequest(req *Request, head []byte, lim *Limits) error {
	i := bytes.IndexByte(head, '\n')
	line := head[:i-1]
	head = head[i+1:]

	// request-line = method SP request-target SP HTTP-version
	m := 0
	for m < len(line) && isTchar(line[m]) {
		m++
	}
	if m == 0 || m == len(line) || line[m] != ' ' {
		return requestError(400, "malformed request line")
	}
	method, rest := line[:m], line[m+1:]
	t := 0
	for t < len(rest) && class[rest[t]]&cTarget != 0 {
		t++
	}
	if t == 0 || t == len(rest) || rest[t] != ' ' {
		return requestError(400, "malformed request line")
	}
	target, ver := rest[:t], rest[t+1:]
	minor, err := parseVersion(ver)
	if err != nil {
		return err
	}
	if !validTarget(method, target) {
		return requestError(400, "malformed request target")
	}

	var fi fieldInfo
	if err := parseFields(head, &req.Header, &fi, requestError); err != nil {
		return err
	}
	if fi.hosts > 1 {
		return requestError(400, "more than one Host field")
	}
	if fi.hosts == 0 && minor == 1 {
		return requestError(400, "HTTP/1.1 request without Host")
	}
	if fi.hostBad {
		return requestError(400, "invalid Host")
	}
	req.Method, req.Target, req.Minor = method, target, minor
	req.ContentLength, req.Chunked = 0, false
	switch {
	case fi.tes > 0:
		switch {
		case minor == 0:
			return requestError(400, "Transfer-Encoding in an HTTP/1.0 request")
		case fi.cls > 0:
			return requestError(400, "both Content-Length and Transfer-Encoding")
		case !fi.teLastChunked || fi.teChunkedNotLast:
			return requestError(400, "Transfer-Encoding does not end in chunked")
		case fi.teOther:
			return requestError(501, "unsupported transfer coding")
		}
		req.ContentLength, req.Chunked = -1, true
	case fi.cls > 1:
		return requestError(400, "more than one Content-Length")
	case fi.cls == 1:
		if fi.clBad {
			return requestError(400, "invalid Content-Length")
		}
		req.ContentLength = fi.cl
	}
	if minor == 1 {
		req.KeepAlive = !fi.close
		req.Upgrade = fi.connUpgrade && fi.upgrade
		req.ExpectContinue = fi.expect100
	} else {
		req.KeepAlive = fi.keepAlive && !fi.close
		req.Upgrade = false
		req.ExpectContinue = false
	}
	return nil
}

// parseVersion parses "HTTP/1.0" or "HTTP/1.1" (RFC 9112 §2.3): another
// well-formed version is 505, anything else 400.
func parseVersion(v []byte) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, requestError(400, "malformed HTTP version")
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, requestError(505, "HTTP version not supported")
	}
	return int(v[7] - '0'), nil
}

// validTarget reports whether target has one of the four forms of RFC 9112
// §3.2: origin-form, absolute-form, authority-form (CONNECT only) or
// asterisk-form (OPTIONS only). The characters were checked already.
func validTarget(method, target []byte) bool {
	switch {
	case target[0] == '/':
		return true
	case len(target) == 1 && target[0] == '*':
		return string(method) == "OPTIONS"
	case string(method) == "CONNECT":
		return validAuthority(target)
	}
	// absolute-form: scheme ":" ...
	c := target[0] | 0x20
	if c < 'a' || c > 'z' {
		return false
	}
	for i := 1; i < len(target); i++ {
		switch c := target[i]; {
		case c == ':':
			return true
		case 'a' <= c|0x20 && c|0x20 <= 'z', '0' <= c && c <= '9', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return false
}

// validAuthority reports whether target is uri-host ":" port (RFC 9112
// §3.2.3), with a non-empty port.
func validAuthority(target []byte) bool {
	i := bytes.LastIndexByte(target, ':')
	return i > 0 && i < len(target)-1 && validHost(target)
}

// validHost reports whether v is uri-host [ ":" port ] (RFC 9110 §7.2):
// an IP-literal in brackets or a reg-name / IPv4 address, and a port of
// digits. An empty Host is valid (RFC 9112 §3.2).
func validHost(v []byte) bool {
	host := v
	if i := bytes.LastIndexByte(v, ':'); i >= 0 && bytes.LastIndexByte(v, ']') < i {
		host = v[:i]
		for _, c := range v[i+1:] {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if len(host) > 0 && host[0] == '[' {
		if len(host) < 3 || host[len(host)-1] != ']' {
			return false
		}
		for _, c := range host[1 : len(host)-1] {
			if !(c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f') {
				return false
			}
		}
		return true
	}
	for _, c := range host {
		if class[c]&cHost == 0 {
			return false
		}
	}
	return len(host) > 0 || len(host) == len(v)
}

// parseResponse parses a response head (RFC 9112 §4, §6.3).
func parseResponse(resp *Response, head []byte, lim *Limits) error {
	i := bytes.IndexByte(head, '\n')
	line := head[:i-1]
	head = head[i+1:]

	// status-line = HTTP-version SP status-code SP [ reason-phrase ]; a
	// missing last SP is taken as an empty reason.
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return responseError(502, "malformed status line")
	}
	minor, err := parseVersion(line[:8])
	if err != nil {
		return responseError(502, "unsupported or malformed HTTP version")
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return responseError(502, "malformed status code")
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return responseError(502, "malformed status code")
	}
	var reason []byte
	if len(line) > 12 {
		reason = line[13:]
		for _, c := range reason {
			if class[c]&cValue == 0 {
				return responseError(502, "invalid character in reason phrase")
			}
		}
	}

	var fi fieldInfo
	if err := parseFields(head, &resp.Header, &fi, responseError); err != nil {
		return err
	}
	resp.Minor, resp.Status, resp.Reason = minor, status, reason
	if minor == 1 {
		resp.KeepAlive = !fi.close
	} else {
		resp.KeepAlive = fi.keepAlive && !fi.close
	}
	resp.ContentLength, resp.Chunked = 0, false
	switch {
	case NoBody(status):
	case fi.tes > 0:
		if minor == 0 {
			return responseError(502, "Transfer-Encoding in an HTTP/1.0 response")
		}
		if fi.teLastChunked && !fi.teChunkedNotLast {
			resp.ContentLength, resp.Chunked = -1, true
		} else {
			resp.ContentLength, resp.KeepAlive = -1, false
		}
		if fi.cls > 0 {
			// RFC 9112 §6.3 (3): Transfer-Encoding wins, the connection
			// ends after the response, and Content-Length is not passed on.
			resp.KeepAlive = false
			resp.Header.Del("Content-Length")
		}
	case fi.cls > 1:
		return responseError(502, "more than one Content-Length")
	case fi.cls == 1:
		if fi.clBad {
			return responseError(502, "invalid Content-Length")
		}
		resp.ContentLength = fi.cl
	default:
		resp.ContentLength, resp.KeepAlive = -1, false
	}
	return nil
}
