package cache

import (
	"encoding/binary"

	"berth/balancer/h1"
)

// A cache key has two parts. The primary key names the resource: a scheme
// byte ('h' or 's'), the lower-cased Host without a default port, and the
// request-target (path and query) exactly as sent (§4: the target URI;
// never X-Forwarded-Host or any other unkeyed field). All variants of one
// resource hang off it, so invalidation and purging find them all. The
// variant key tells variants apart: the values of the configured cookies
// and of the request fields the response's Vary names (§4.1).

// head is what one pass over a request head finds.
type head struct {
	host      []byte
	hosts     int
	auth      bool // Authorization
	noStore   bool // Cache-Control: no-store
	inm, ims  []byte
	nINM      int  // If-None-Match fields
	nIMS      int  // If-Modified-Since fields
	precond   bool // If-Match, If-Unmodified-Since or If-Range
	condition bool // any conditional field: the client validates for itself
}

// scanHead reads the fields the cache needs in one pass.
func scanHead(fs h1.Fields) head {
	var r head
	for i := range fs {
		n := fs[i].Name
		switch len(n) {
		case 4:
			if h1.EqualFold(n, "host") {
				r.host = fs[i].Value
				r.hosts++
			}
		case 8:
			if h1.EqualFold(n, "if-match") || h1.EqualFold(n, "if-range") {
				r.precond = true
				r.condition = true
			}
		case 13:
			if h1.EqualFold(n, "authorization") {
				r.auth = true
			} else if h1.EqualFold(n, "cache-control") {
				if fs[i:i+1].HasToken("cache-control", "no-store") {
					r.noStore = true
				}
			} else if h1.EqualFold(n, "if-none-match") {
				r.inm = fs[i].Value
				r.nINM++
				r.condition = true
			}
		case 17:
			if h1.EqualFold(n, "if-modified-since") {
				r.ims = fs[i].Value
				r.nIMS++
				r.condition = true
			}
		case 19:
			if h1.EqualFold(n, "if-unmodified-since") {
				r.precond = true
				r.condition = true
			}
		}
	}
	return r
}

// appendKey appends the primary key of a request with an origin-form
// target to dst. It reports false for what the cache does not key: any
// other target form (an absolute-form target names its own host, which the
// app may not see), and a Host that is repeated or holds characters that
// no host name has.
func appendKey(dst []byte, target, host []byte, hosts int, tls bool) ([]byte, bool) {
	if len(target) == 0 || target[0] != '/' || hosts > 1 {
		return dst, false
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return dst, false
		}
	}
	if tls {
		dst = append(dst, 's')
	} else {
		dst = append(dst, 'h')
	}
	var ok bool
	dst, ok = appendHost(dst, host, tls)
	if !ok {
		return dst, false
	}
	return append(dst, target...), true
}

// appendHost appends host lower-cased, without the scheme's default port.
func appendHost(dst, host []byte, tls bool) ([]byte, bool) {
	if tls {
		if n := len(host); n > 4 && string(host[n-4:]) == ":443" {
			host = host[:n-4]
		}
	} else if n := len(host); n > 3 && string(host[n-3:]) == ":80" {
		host = host[:n-3]
	}
	for _, c := range host {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == ':', c == '[', c == ']', c == '_':
		default:
			return dst, false
		}
		dst = append(dst, c)
	}
	return dst, true
}

// splitKey returns the host and path of a primary key.
func splitKey(key string) (host, path string) {
	rest := key[1:]
	i := 0
	for i < len(rest) && rest[i] != '/' {
		i++
	}
	host, path = rest[:i], rest[i:]
	for j := 0; j < len(path); j++ {
		if path[j] == '?' {
			return host, path[:j]
		}
	}
	return host, path
}

// locationKey returns the primary key a Location or Content-Location value
// names when it is on the same origin as the primary key reqKey (§4.4),
// or false.
func locationKey(reqKey string, loc []byte) (string, bool) {
	loc = trimOWS(loc)
	if i := indexByte(loc, '#'); i >= 0 {
		loc = loc[:i]
	}
	host, _ := splitKey(reqKey)
	origin := reqKey[:1+len(host)]
	if len(loc) > 0 && loc[0] == '/' && (len(loc) == 1 || loc[1] != '/') {
		k, ok := appendKey(nil, loc, []byte(host), 1, reqKey[0] == 's')
		return string(k), ok
	}
	var tls bool
	switch {
	case len(loc) > 7 && h1.EqualFold(loc[:7], "http://"):
		loc = loc[7:]
	case len(loc) > 8 && h1.EqualFold(loc[:8], "https://"):
		loc, tls = loc[8:], true
	default:
		return "", false // relative paths and other schemes: not worth it
	}
	j := 0
	for j < len(loc) && loc[j] != '/' && loc[j] != '?' {
		j++
	}
	target := loc[j:]
	if len(target) == 0 {
		target = []byte("/")
	} else if target[0] == '?' {
		target = append([]byte("/"), target...)
	}
	k, ok := appendKey(nil, target, loc[:j], 1, tls)
	if !ok || string(k[:len(origin)]) != origin || (len(k) > len(origin) && k[len(origin)] != '/') {
		return "", false
	}
	return string(k), true
}

// appendVariant appends the variant key of a request: each configured
// cookie's value, then the value of each field vary names (lower case).
// It reports false when a configured cookie appears twice with different
// values: the app may read either, so the request is not keyed.
func appendVariant(dst []byte, fs h1.Fields, cookies []string, vary []string) ([]byte, bool) {
	for _, name := range cookies {
		v, n, ok := cookieValue(fs, name)
		if !ok {
			return dst, false
		}
		dst = appendPart(dst, v, n > 0)
	}
	for _, name := range vary {
		if name == "accept-encoding" {
			dst = append(dst, 1, acceptEncoding(fs))
			continue
		}
		start := len(dst)
		dst = append(dst, 1, 0, 0, 0, 0) // the length goes in these four bytes
		found := false
		for i := range fs {
			if !h1.EqualFold(fs[i].Name, name) {
				continue
			}
			if found {
				dst = append(dst, ',')
			}
			found = true
			dst = append(dst, trimOWS(fs[i].Value)...)
		}
		if !found {
			dst = append(dst[:start], 0)
			continue
		}
		binary.LittleEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-5))
	}
	return dst, true
}

// appendPart appends one present (or absent) value, length-prefixed so
// that no two lists of values encode alike.
func appendPart(dst, v []byte, present bool) []byte {
	if !present {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// cookieValue finds the cookie name in the Cookie fields (RFC 6265 §5.4):
// its value, how often it appears, and false if it appears with two
// different values.
func cookieValue(fs h1.Fields, name string) (val []byte, n int, ok bool) {
	for i := range fs {
		if !h1.EqualFold(fs[i].Name, "cookie") {
			continue
		}
		v := fs[i].Value
		for len(v) > 0 {
			var pair []byte
			pair, v = h1.NextItem(v, ';')
			pair = trimOWS(pair)
			eq := indexByte(pair, '=')
			if eq < 0 || string(trimOWS(pair[:eq])) != name {
				continue
			}
			cv := trimOWS(pair[eq+1:])
			if n > 0 && string(cv) != string(val) {
				return nil, n, false
			}
			val = cv
			n++
		}
	}
	return val, n, true
}

// Accept-Encoding is normalized to the set of codings an app may choose
// among: two clients that accept the same codings get the same variant,
// whatever their order, spacing or q-values (other than 0).
const (
	aeGzip = 1 << iota
	aeBr
	aeZstd
	aeDeflate
	aePresent // the field is there (absent means "anything", RFC 9110 §12.5.3)
)

func acceptEncoding(fs h1.Fields) byte {
	var mask, star, refused byte
	for i := range fs {
		if !h1.EqualFold(fs[i].Name, "accept-encoding") {
			continue
		}
		mask |= aePresent
		v := fs[i].Value
		for len(v) > 0 {
			var item []byte
			item, v = h1.NextItem(v, ',')
			coding, q0 := item, false
			if j := indexByte(item, ';'); j >= 0 {
				coding, q0 = item[:j], qZero(item[j+1:])
			}
			coding = trimOWS(coding)
			var bit byte
			switch {
			case h1.EqualFold(coding, "gzip"), h1.EqualFold(coding, "x-gzip"):
				bit = aeGzip
			case h1.EqualFold(coding, "br"):
				bit = aeBr
			case h1.EqualFold(coding, "zstd"):
				bit = aeZstd
			case h1.EqualFold(coding, "deflate"):
				bit = aeDeflate
			case len(coding) == 1 && coding[0] == '*':
				if !q0 {
					star = aeGzip | aeBr | aeZstd | aeDeflate
				}
				continue
			default:
				continue
			}
			if q0 {
				refused |= bit
			} else {
				mask |= bit
			}
		}
	}
	return (mask | star) &^ refused
}

// qZero reports whether parameters ";q=0", ";q=0.0" etc. set q to zero.
func qZero(params []byte) bool {
	p := trimOWS(params)
	if len(p) < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
		return false
	}
	for _, c := range p[2:] {
		if c != '0' && c != '.' {
			return false
		}
	}
	return true
}
