package static

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// fixture is a front door on a loopback port whose chain is Files over an
// "app" that answers 404 "app saw PATH".
type fixture struct {
	addr  string
	dir   string
	large []byte
}

func newFixture(t *testing.T, maxAge time.Duration) *fixture {
	t.Helper()
	return newFixtureTTL(t, maxAge, 0)
}

// newFixtureTTL is newFixture with Config.SiblingTTL set (negative: every
// request looks the files up, so a change shows at once).
func newFixtureTTL(t *testing.T, maxAge, ttl time.Duration) *fixture {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "public")
	large := make([]byte, 3<<20+17)
	rand.Read(large)
	files := map[string]string{
		"hello.txt":                "hello, world\n",
		"index.html":               "<h1>home</h1>",
		"sub/index.html":           "<h1>sub</h1>",
		"sub/.secret":              "no",
		".env":                     "SECRET=1",
		".well-known/acme":         "token",
		"app.js":                   "console.log('identity')",
		"app.js.br":                "BR",
		"app.js.gz":                "GZ",
		"style.css.gz":             "GZCSS",
		"style.css":                "body{}",
		"app-3f9a1c2b.js":          "hashed",
		"large.bin":                string(large),
		"dir.txt/index.html":       "x",
		"with space.txt":           "spaced",
		"x.tar.gz":                 "tarball",
		"unknown.zzqq":             "?",
		"../outside-secret.txt":    "outside",
		"../public2/neighbour.txt": "neighbour",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"escape.txt": "../outside-secret.txt",
		"abs.txt":    filepath.Join(base, "outside-secret.txt"),
		"link.txt":   "hello.txt",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	app := balancer.HandlerFunc(func(x *balancer.Exchange) {
		io.Copy(io.Discard, x.Body)
		text := "app saw " + string(x.Req.Method) + " " + string(x.Req.Target)
		resp := h1.Response{Status: 404, ContentLength: int64(len(text))}
		if x.W.WriteHead(&resp) == nil {
			io.WriteString(x.W, text)
		}
	})
	files2, err := New(Config{Dir: dir, Next: app, MaxAge: maxAge, SiblingTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files2.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: files2, Listeners: []net.Listener{l}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return &fixture{addr: l.Addr().String(), dir: dir, large: large}
}

// do sends a raw request head and reads one response.
func (f *fixture) do(t *testing.T, head string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(head, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", head, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", head, err)
	}
	return resp, string(body)
}

func get(target string, fields ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(fields, "") + "\r\n"
}

func TestServes(t *testing.T) {
	f := newFixture(t, time.Hour)
	for _, tc := range []struct {
		name   string
		req    string
		status int
		body   string
		fields map[string]string // "" means must be absent
	}{
		{name: "file", req: get("/hello.txt"), status: 200, body: "hello, world\n",
			fields: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Accept-Ranges": "bytes", "Content-Length": "13", "Vary": "", "Cache-Control": "", "Content-Encoding": ""}},
		{name: "query ignored", req: get("/hello.txt?v=1"), status: 200, body: "hello, world\n"},
		{name: "escaped name", req: get("/with%20space.txt"), status: 200, body: "spaced"},
		{name: "head", req: "HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", status: 200, body: "",
			fields: map[string]string{"Content-Length": "13"}},
		{name: "root index", req: get("/"), status: 200, body: "<h1>home</h1>", fields: map[string]string{"Content-Type": "text/html; charset=utf-8"}},
		{name: "dir index", req: get("/sub/"), status: 200, body: "<h1>sub</h1>"},
		{name: "dir without slash goes to app", req: get("/sub"), status: 404, body: "app saw GET /sub"},
		{name: "missing goes to app", req: get("/nope.css"), status: 404, body: "app saw GET /nope.css"},
		{name: "file as dir goes to app", req: get("/hello.txt/x"), status: 404, body: "app saw GET /hello.txt/x"},
		{name: "post goes to app", req: "POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", status: 404, body: "app saw POST /hello.txt"},
		{name: "dotfile", req: get("/.env"), status: 404, body: "app saw GET /.env"},
		{name: "nested dotfile", req: get("/sub/.secret"), status: 404, body: "app saw GET /sub/.secret"},
		{name: "escaped dotfile", req: get("/%2eenv"), status: 404, body: "app saw GET /%2eenv"},
		{name: "well-known", req: get("/.well-known/acme"), status: 200, body: "token"},
		{name: "dotdot", req: get("/../outside-secret.txt"), status: 404, body: "app saw GET /../outside-secret.txt"},
		{name: "escaped dotdot", req: get("/%2e%2e/outside-secret.txt"), status: 404, body: "app saw GET /%2e%2e/outside-secret.txt"},
		{name: "escaped slash dotdot", req: get("/sub%2f..%2f..%2foutside-secret.txt"), status: 404, body: "app saw GET /sub%2f..%2f..%2foutside-secret.txt"},
		{name: "prefix sibling dir", req: get("/../public2/neighbour.txt"), status: 404, body: "app saw GET /../public2/neighbour.txt"},
		{name: "symlink escape", req: get("/escape.txt"), status: 404, body: "app saw GET /escape.txt"},
		{name: "absolute symlink escape", req: get("/abs.txt"), status: 404, body: "app saw GET /abs.txt"},
		{name: "symlink inside", req: get("/link.txt"), status: 200, body: "hello, world\n"},
		{name: "double slash", req: get("//hello.txt"), status: 404, body: "app saw GET //hello.txt"},
		{name: "NUL", req: get("/hello.txt%00.png"), status: 404, body: "app saw GET /hello.txt%00.png"},
		{name: "bad escape", req: get("/hello%zz"), status: 404, body: "app saw GET /hello%zz"},
		{name: "unknown type", req: get("/unknown.zzqq"), status: 200, body: "?", fields: map[string]string{"Content-Type": "application/octet-stream"}},
		{name: "fingerprinted", req: get("/app-3f9a1c2b.js"), status: 200, body: "hashed", fields: map[string]string{"Cache-Control": "public, max-age=3600, immutable"}},

		{name: "br preferred", req: get("/app.js", "Accept-Encoding: gzip, deflate, br\r\n"), status: 200, body: "BR",
			fields: map[string]string{"Content-Encoding": "br", "Vary": "Accept-Encoding", "Content-Type": "text/javascript; charset=utf-8"}},
		{name: "gzip", req: get("/app.js", "Accept-Encoding: gzip\r\n"), status: 200, body: "GZ", fields: map[string]string{"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}},
		{name: "br refused by q=0", req: get("/app.js", "Accept-Encoding: br;q=0, *\r\n"), status: 200, body: "GZ", fields: map[string]string{"Content-Encoding": "gzip"}},
		{name: "identity with vary", req: get("/app.js"), status: 200, body: "console.log('identity')", fields: map[string]string{"Content-Encoding": "", "Vary": "Accept-Encoding"}},
		{name: "only gz sibling, br asked", req: get("/style.css", "Accept-Encoding: br\r\n"), status: 200, body: "body{}", fields: map[string]string{"Content-Encoding": "", "Vary": "Accept-Encoding"}},
		{name: "compressed file itself", req: get("/x.tar.gz", "Accept-Encoding: gzip\r\n"), status: 200, body: "tarball", fields: map[string]string{"Content-Encoding": "", "Vary": ""}},

		{name: "range", req: get("/hello.txt", "Range: bytes=0-4\r\n"), status: 206, body: "hello", fields: map[string]string{"Content-Range": "bytes 0-4/13", "Content-Length": "5"}},
		{name: "range open", req: get("/hello.txt", "Range: bytes=7-\r\n"), status: 206, body: "world\n", fields: map[string]string{"Content-Range": "bytes 7-12/13"}},
		{name: "range suffix", req: get("/hello.txt", "Range: bytes=-6\r\n"), status: 206, body: "world\n"},
		{name: "range past end clipped", req: get("/hello.txt", "Range: bytes=10-99\r\n"), status: 206, body: "ld\n", fields: map[string]string{"Content-Range": "bytes 10-12/13"}},
		{name: "range unsatisfiable", req: get("/hello.txt", "Range: bytes=13-\r\n"), status: 416,
			body: "berth: the requested range is not satisfiable\n", fields: map[string]string{"Content-Range": "bytes */13"}},
		{name: "several ranges: whole", req: get("/hello.txt", "Range: bytes=0-1,3-4\r\n"), status: 200, body: "hello, world\n"},
		{name: "malformed range: whole", req: get("/hello.txt", "Range: bytes=5-1\r\n"), status: 200, body: "hello, world\n"},
		{name: "other unit: whole", req: get("/hello.txt", "Range: items=0-1\r\n"), status: 200, body: "hello, world\n"},
		{name: "if-range stale etag", req: get("/hello.txt", "Range: bytes=0-4\r\n", "If-Range: \"old\"\r\n"), status: 200, body: "hello, world\n"},
		{name: "if-range stale date", req: get("/hello.txt", "Range: bytes=0-4\r\n", "If-Range: Mon, 02 Jan 2006 15:04:05 GMT\r\n"), status: 200, body: "hello, world\n"},
		{name: "range of gzip sibling", req: get("/app.js", "Accept-Encoding: gzip\r\n", "Range: bytes=1-\r\n"), status: 206, body: "Z",
			fields: map[string]string{"Content-Encoding": "gzip", "Content-Range": "bytes 1-1/2"}},

		{name: "ims future", req: get("/hello.txt", "If-Modified-Since: "+time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)+"\r\n"), status: 304, body: ""},
		{name: "ims past", req: get("/hello.txt", "If-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n"), status: 200, body: "hello, world\n"},
		{name: "inm other", req: get("/hello.txt", "If-None-Match: \"other\"\r\n"), status: 200, body: "hello, world\n"},
		{name: "inm star", req: get("/hello.txt", "If-None-Match: *\r\n"), status: 304, body: ""},
		{name: "inm beats ims", req: get("/hello.txt", "If-None-Match: \"other\"\r\n", "If-Modified-Since: "+time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)+"\r\n"), status: 200, body: "hello, world\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, tc.req)
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			for k, want := range tc.fields {
				got, ok := resp.Header[http.CanonicalHeaderKey(k)]
				if k == "Content-Length" {
					got, ok = []string{fmt.Sprint(resp.ContentLength)}, true
				}
				switch {
				case want == "" && ok:
					t.Errorf("%s: %q, want none", k, got)
				case want != "" && (len(got) != 1 || got[0] != want):
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestConditional(t *testing.T) {
	f := newFixtureTTL(t, 0, -1) // the change below must show at once
	resp, _ := f.do(t, get("/app.js", "Accept-Encoding: br\r\n"))
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lm == "" {
		t.Fatalf("no validators: %v", resp.Header)
	}
	plain, _ := f.do(t, get("/app.js"))
	if plain.Header.Get("ETag") == etag {
		t.Fatalf("br and identity share the ETag %s", etag)
	}
	for _, tc := range []struct {
		name   string
		fields []string
		status int
		body   string
	}{
		{"inm", []string{"Accept-Encoding: br\r\n", "If-None-Match: " + etag + "\r\n"}, 304, ""},
		{"inm weak", []string{"Accept-Encoding: br\r\n", "If-None-Match: \"x\", W/" + etag + "\r\n"}, 304, ""},
		{"inm of other encoding", []string{"If-None-Match: " + etag + "\r\n"}, 200, "console.log('identity')"},
		{"ims equal", []string{"Accept-Encoding: br\r\n", "If-Modified-Since: " + lm + "\r\n"}, 304, ""},
		{"if-range etag", []string{"Accept-Encoding: br\r\n", "Range: bytes=1-\r\n", "If-Range: " + etag + "\r\n"}, 206, "R"},
		{"if-range weak never", []string{"Accept-Encoding: br\r\n", "Range: bytes=1-\r\n", "If-Range: W/" + etag + "\r\n"}, 200, "BR"},
		{"if-range date", []string{"Accept-Encoding: br\r\n", "Range: bytes=1-\r\n", "If-Range: " + lm + "\r\n"}, 206, "R"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, get("/app.js", tc.fields...))
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.status == 304 && (resp.Header.Get("ETag") != etag || resp.Header.Get("Vary") != "Accept-Encoding") {
				t.Errorf("304 without its validators: %v", resp.Header)
			}
		})
	}
	// A changed file gets a new ETag: the old one no longer matches.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(f.dir, "app.js.br"), later, later); err != nil {
		t.Fatal(err)
	}
	resp, body := f.do(t, get("/app.js", "Accept-Encoding: br\r\n", "If-None-Match: "+etag+"\r\n"))
	if resp.StatusCode != 200 || body != "BR" {
		t.Fatalf("after a change: %d %q, want 200", resp.StatusCode, body)
	}
}

// TestLargeKeepAlive sends a file larger than the write buffer (the
// sendfile path) and ranges of it, several on one keep-alive connection.
func TestLargeKeepAlive(t *testing.T) {
	f := newFixture(t, 0)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	n := int64(len(f.large))
	for _, tc := range []struct {
		rng        string
		off, count int64
	}{
		{"", 0, n},
		{"bytes=1000-", 1000, n - 1000},
		{"bytes=5-70004", 5, 70000},
		{"", 0, n},
		{"bytes=-100", n - 100, 100},
	} {
		fields := ""
		if tc.rng != "" {
			fields = "Range: " + tc.rng + "\r\n"
		}
		io.WriteString(c, get("/large.bin", fields))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.rng, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: %v", tc.rng, err)
		}
		if !bytes.Equal(body, f.large[tc.off:tc.off+tc.count]) {
			t.Fatalf("%s: %d bytes, not the file's %d at %d", tc.rng, len(body), tc.count, tc.off)
		}
		if resp.Close {
			t.Fatalf("%s: connection closed after the response", tc.rng)
		}
	}
}

func TestNew(t *testing.T) {
	next := balancer.HandlerFunc(func(*balancer.Exchange) {})
	if _, err := New(Config{Dir: filepath.Join(t.TempDir(), "none"), Next: next}); !os.IsNotExist(err) && !strings.Contains(fmt.Sprint(err), "no such file") {
		t.Errorf("missing dir: %v, want not-exist", err)
	}
	if _, err := New(Config{Dir: t.TempDir()}); err == nil {
		t.Error("nil Next accepted")
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"/", "index.html", true},
		{"/a", "a", true},
		{"/a/b.css", "a/b.css", true},
		{"/a/", "a/index.html", true},
		{"/a%2Fb", "a/b", true},
		{"/.well-known/x", ".well-known/x", true},
		{"/a/.well-known/x", "", false},
		{"/a//b", "", false},
		{"/a//", "", false},
		{"/..", "", false},
		{"/a/..", "", false},
		{"/a/./b", "", false},
		{"/.", "", false},
		{"/%2e%2E/x", "", false},
		{"/a%00", "", false},
		{"/a%0", "", false},
		{"/a%g0", "", false},
		{"a", "", false},
		{"", "", false},
	} {
		b, ok := cleanPath(nil, []byte(tc.in))
		if got := string(b); got != tc.want || ok != tc.ok {
			t.Errorf("cleanPath(%q) = %q, %v; want %q, %v", tc.in, b, ok, tc.want, tc.ok)
		}
	}
}

func TestAccepts(t *testing.T) {
	for _, tc := range []struct {
		ae, token string
		want      bool
	}{
		{"gzip, br", "br", true},
		{"gzip", "br", false},
		{"BR", "br", true},
		{"br;q=0", "br", false},
		{"br; q=0.000", "br", false},
		{"br;q=0.001", "br", true},
		{"*", "br", true},
		{"*;q=0, gzip", "br", false},
		{"*, br;q=0", "br", false},
		{"", "br", false},
		{"gzip;q=1.0", "gzip", true},
	} {
		if got := accepts([]byte(tc.ae), tc.token); got != tc.want {
			t.Errorf("accepts(%q, %q) = %v", tc.ae, tc.token, got)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		v      string
		size   int64
		off, n int64
		ok     bool
	}{
		{"bytes=0-0", 10, 0, 1, true},
		{"bytes=0-", 10, 0, 10, true},
		{"bytes=9-", 10, 9, 1, true},
		{"bytes=10-", 10, 0, -1, true},
		{"bytes=-1", 10, 9, 1, true},
		{"bytes=-20", 10, 0, 10, true},
		{"bytes=-0", 10, 0, -1, true},
		{"bytes=0-", 0, 0, -1, true},
		{"bytes=3-2", 10, 0, 0, false},
		{"bytes=a-b", 10, 0, 0, false},
		{"bytes=1-2,4-5", 10, 0, 0, false},
		{"bytes=-", 10, 0, 0, false},
		{"bytes=99999999999999999999-", 10, 0, 0, false},
		{"bits=0-1", 10, 0, 0, false},
		{"bytes=+1-2", 10, 0, 0, false},
	} {
		off, n, ok := parseRange([]byte(tc.v), tc.size)
		if ok != tc.ok || ok && (off != tc.off || n != tc.n) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", tc.v, tc.size, off, n, ok, tc.off, tc.n, tc.ok)
		}
	}
}

func TestFingerprinted(t *testing.T) {
	for name, want := range map[string]bool{
		"assets/app-3f9a1c2b.js":                           true,
		"main.5e6b7c8d9a.css":                              true,
		"index-B4x9_kQ2.js":                                true,
		"application-0123456789abcdef0123456789abcdef.css": true,
		"bootstrap.min.js":                                 false,
		"vendor-bootstrap.js":                              false,
		"app-3f9a1c.js":                                    false,
		"logo.png":                                         false,
		"a1b2c3d4e5/logo.png":                              false,
		"x.12345678":                                       false,
	} {
		if got := Fingerprinted(name); got != want {
			t.Errorf("Fingerprinted(%q) = %v", name, got)
		}
	}
}

// TestSiblingCache: a sibling's presence is remembered for SiblingTTL,
// and looked up every time when it is negative.
func TestSiblingCache(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.css"), []byte("a"), 0o644)
	next := balancer.HandlerFunc(func(*balancer.Exchange) {})
	cached, err := New(Config{Dir: dir, Next: next, SiblingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	uncached, err := New(Config{Dir: dir, Next: next, SiblingTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer uncached.Close()
	now := time.Now()
	if has := cached.siblingsOf("a.css", now); has[1] {
		t.Fatal("a .gz sibling before there is one")
	}
	os.WriteFile(filepath.Join(dir, "a.css.gz"), []byte("gz"), 0o644)
	if has := cached.siblingsOf("a.css", now.Add(59*time.Minute)); has[1] {
		t.Error("the cached answer changed within its TTL")
	}
	if has := cached.siblingsOf("a.css", now.Add(time.Hour)); !has[1] {
		t.Error("the cached answer outlived its TTL (the exchange's time)")
	}
	if has := uncached.siblingsOf("a.css", now); !has[1] || has[0] {
		t.Errorf("uncached: %v, want only .gz", has)
	}
}

// TestMissingCache: a name that is no file is remembered for SiblingTTL,
// so the app's requests cost no openat each; a file deployed later is
// served once that time has passed.
func TestMissingCache(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	var toApp int
	next := balancer.HandlerFunc(func(*balancer.Exchange) { toApp++ })
	f, err := New(Config{Dir: dir, Next: next, SiblingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.knownMissing([]byte("late.txt"), now) {
		t.Fatal("a name never looked up is known missing")
	}
	if _, _, ok := f.open("late.txt"); ok {
		t.Fatal("late.txt exists before it was written")
	}
	f.rememberMissing("late.txt", now)
	os.WriteFile(filepath.Join(dir, "late.txt"), []byte("late"), 0o644)
	if !f.knownMissing([]byte("late.txt"), now) {
		t.Error("a missing name is looked up again within its TTL")
	}
	if f.knownMissing([]byte("late.txt"), now.Add(time.Hour)) {
		t.Error("a missing name is still taken as missing after its TTL")
	}
	short, _ := New(Config{Dir: dir, Next: next, SiblingTTL: -1})
	defer short.Close()
	short.rememberMissing("late.txt", now)
	if short.knownMissing([]byte("late.txt"), now) {
		t.Error("with a negative SiblingTTL, absence is remembered")
	}
}

// TestMissingDirectory: when a missing name's first segment is no
// directory either (an app route such as /api/…), one entry stands for
// every name under it, so 10,000 distinct URLs cost one openat, not
// 10,000 and a full map; under a directory that exists, names are
// remembered one by one; a directory made later shows after SiblingTTL.
func TestMissingDirectory(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "assets"), 0o755)
	var toApp int
	next := balancer.HandlerFunc(func(*balancer.Exchange) { toApp++ })
	f, err := New(Config{Dir: dir, Next: next, SiblingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 10000 {
		f.ServeExchange(&balancer.Exchange{Req: &h1.Request{Method: []byte("GET"), Target: []byte(fmt.Sprintf("/api/users/%d", i))}})
	}
	if toApp != 10000 || len(f.missing) != 1 || !f.knownMissing([]byte("api/other"), now) {
		t.Errorf("%d to the app, %d names remembered (%v); want 10000 and one entry for api/", toApp, len(f.missing), f.missing)
	}
	f.rememberMissing("assets/a.css", now)
	if f.knownMissing([]byte("assets/b.css"), now) || !f.knownMissing([]byte("assets/a.css"), now) {
		t.Error("a name under an existing directory stands for its siblings")
	}
	os.MkdirAll(filepath.Join(dir, "api", "users"), 0o755)
	os.WriteFile(filepath.Join(dir, "api", "users", "7"), []byte("seven"), 0o644)
	if f.knownMissing([]byte("api/users/7"), now.Add(2*time.Hour)) { // the TTL passed
		t.Error("a directory made later is still taken as missing after the TTL")
	}
}

// TestAppRouteAllocatesNothing: a GET that is no file (an app route, a
// cached page) passes this link without an allocation, once its name or
// first segment is known missing.
func TestAppRouteAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "assets"), 0o755)
	f, err := New(Config{Dir: dir, Next: balancer.HandlerFunc(func(*balancer.Exchange) {}), SiblingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, target := range []string{"/api/users/7", "/cached", "/assets/gone.css", "/"} {
		x := &balancer.Exchange{Req: &h1.Request{Method: []byte("GET"), Target: []byte(target)}}
		f.ServeExchange(x) // remembers it missing
		if n := testing.AllocsPerRun(1000, func() { f.ServeExchange(x) }); n != 0 {
			t.Errorf("GET %s, no file: %v allocations per request, want 0", target, n)
		}
	}
}

// TestContentCache: a small file is read once and served from memory for
// SiblingTTL (a change shows at most that late); a large one is not kept.
func TestContentCache(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "small.txt"), []byte("v1"), 0o644)
	os.WriteFile(filepath.Join(dir, "big.bin"), make([]byte, maxCachedFile+1), 0o644)
	f, err := New(Config{Dir: dir, Next: balancer.HandlerFunc(func(*balancer.Exchange) {}), SiblingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := time.Now()
	src, ok := f.get("small.txt", now)
	if !ok || string(src.data) != "v1" || src.file != nil {
		t.Fatalf("small file: %+v %v, want its bytes from memory", src, ok)
	}
	os.WriteFile(filepath.Join(dir, "small.txt"), []byte("v2"), 0o644)
	if src, _ := f.get("small.txt", now.Add(59*time.Minute)); string(src.data) != "v1" {
		t.Errorf("within the TTL got %q, want the cached v1", src.data)
	}
	if src, _ := f.get("small.txt", now.Add(time.Hour)); string(src.data) != "v2" {
		t.Errorf("after the TTL got %q, want v2", src.data)
	}
	big, ok := f.get("big.bin", now)
	if !ok || big.data != nil || big.file == nil {
		t.Errorf("a file over %d bytes was kept in memory", maxCachedFile)
	}
	big.close()
}
