package static

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"berth/balancer/h1"
)

// FuzzCleanPath: a name it accepts stays under the root: relative, no
// empty, "." or ".." segment, no dot segment but a leading .well-known,
// no NUL.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b.css", "/a/", "/%2e%2e/x", "/.well-known/acme", "/a%2F..%2Fb", "//x", "/a%00", "/%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		b, ok := cleanPath(nil, []byte(p))
		if !ok {
			return
		}
		name := string(b)
		if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
			t.Fatalf("cleanPath(%q) = %q", p, name)
		}
		for i, seg := range strings.Split(name, "/") {
			if seg == "" || seg[0] == '.' && !(i == 0 && seg == ".well-known") {
				t.Fatalf("cleanPath(%q) = %q: segment %q", p, name, seg)
			}
		}
	})
}

// FuzzParseRange: a range it grants lies inside the file.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=-5", "bytes=5-", "bytes=1-2,3-4", "bytes=99999999999999999-", "bytes=-0"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, v string, size int64) {
		if size < 0 {
			return
		}
		off, n, ok := parseRange([]byte(v), size)
		if !ok || n == -1 {
			return
		}
		if off < 0 || n < 1 || off+n > size {
			t.Fatalf("parseRange(%q, %d) = %d, %d", v, size, off, n)
		}
	})
}

// FuzzValidators: the header parsers never panic, and a list holding the
// tag matches it.
func FuzzValidators(f *testing.F) {
	f.Add(`"a", W/"b"`, "gzip;q=0.5, br;q=0", "Mon, 02 Jan 2006 15:04:05 GMT")
	f.Fuzz(func(t *testing.T, inm, ae, date string) {
		etag := []byte(`"x-1"`)
		h := h1.Fields{{Name: []byte("If-None-Match"), Value: []byte(inm)}, {Name: []byte("If-Modified-Since"), Value: []byte(date)}}
		notModified(h, etag, time.Unix(0, 0))
		ifRange([]byte(inm), etag, []byte(date))
		accepts([]byte(ae), "br")
		if !etagListMatch(append([]byte(inm+", "), etag...), etag, true) && !bytes.Contains([]byte(inm), []byte("*")) {
			// A list ending in the tag matches, unless the fuzzer's prefix
			// is the bare "*" (then the whole value is not a list).
			t.Fatalf("list %q, %s does not match %s", inm, etag, etag)
		}
	})
}
