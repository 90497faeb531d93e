package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/balancer"
)

// edgeApp copies the echo app into a temp dir with a public/ directory
// holding files.
func edgeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/echo/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.js"), src, 0o644); err != nil {
		t.Fatal(err)
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
	return dir
}

// TestStaticFiles: berth serves public/ itself; what is not there reaches
// the app; --static=off and --static-dir are honoured.
func TestStaticFiles(t *testing.T) {
	app := edgeApp(t, map[string]string{
		"public/static/4k.txt":   strings.Repeat("x", 4096),
		"public/app-3f9a1c2b.js": "hashed",
		"assets/other.txt":       "other",
	})
	appSaw := func(t *testing.T, body, url string) {
		t.Helper()
		var seen struct{ URL string }
		if err := json.Unmarshal([]byte(body), &seen); err != nil || seen.URL != url {
			t.Fatalf("want the app's answer for %s, got %q", url, body)
		}
	}
	t.Run("default public", func(t *testing.T) {
		b := startBerth(t, app, "--workers", "1", "--static-max-age", "8760h")
		b.WaitFor(`msg="serving static files"`, 10*time.Second)
		if code, body := get(t, nil, b.URL+"/static/4k.txt"); code != 200 || body != strings.Repeat("x", 4096) {
			t.Fatalf("static file: %d %q", code, body[:min(len(body), 40)])
		}
		resp, err := http.Get(b.URL + "/app-3f9a1c2b.js")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("Cache-Control %q", cc)
		}
		b.WaitFor(`echo app listening`, 10*time.Second)
		code, body := get(t, nil, b.URL+"/missing.txt")
		if code != 200 {
			t.Fatalf("missing file: %d %q", code, body)
		}
		appSaw(t, body, "/missing.txt")
	})
	t.Run("off", func(t *testing.T) {
		b := startBerth(t, app, "--workers", "1", "--static=off")
		b.WaitFor(`echo app listening`, 10*time.Second)
		_, body := get(t, nil, b.URL+"/static/4k.txt")
		appSaw(t, body, "/static/4k.txt")
	})
	t.Run("static-dir", func(t *testing.T) {
		b := startBerth(t, app, "--workers", "1", "--static-dir", "assets")
		if code, body := get(t, nil, b.URL+"/other.txt"); code != 200 || body != "other" {
			t.Fatalf("--static-dir file: %d %q", code, body)
		}
	})
}

// rawDo sends raw bytes on c and reads one response.
func rawDo(t *testing.T, c net.Conn, br *bufio.Reader, req string) (int, string, bool) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q: %v", req[:min(len(req), 60)], err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Close
}

// TestClientLimits: the limit flags reach the front door with the right
// answers, and a connection over --max-connections waits for a slot
// instead of being refused.
func TestClientLimits(t *testing.T) {
	app := edgeApp(t, nil)
	b := startBerth(t, app, "--workers", "1", "--max-connections", "1", "--max-body-size", "1K",
		"--max-header-bytes", "2048", "--max-request-line", "512")
	b.WaitFor(`echo app listening`, 20*time.Second)
	addr := strings.TrimPrefix(b.URL, "http://")
	dialRaw := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}

	first, fr := dialRaw()
	for _, tc := range []struct {
		name, req string
		status    int
		text      string
	}{
		{"ok", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, `"url":"/a"`},
		{"body at limit", "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("b", 1024), 200, `"url":"/b"`},
	} {
		code, body, _ := rawDo(t, first, fr, tc.req)
		if code != tc.status || !strings.Contains(body, tc.text) {
			t.Fatalf("%s: %d %q", tc.name, code, body)
		}
	}
	// The second connection waits in the backlog while the first is open.
	second, sr := dialRaw()
	io.WriteString(second, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := sr.ReadByte(); err == nil {
		t.Fatalf("second connection answered (%q) while the first holds the only slot", n)
	}
	first.Close()
	code, body, _ := rawDo(t, second, sr, "")
	if code != 200 || !strings.Contains(body, `"url":"/second"`) {
		t.Fatalf("second connection after the first closed: %d %q", code, body)
	}
	second.Close()

	for _, tc := range []struct {
		name, req string
		status    int
		text      string
	}{
		{"body over", "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" + strings.Repeat("c", 1025), 413, "berth: the request body is larger than the 1K this server accepts.\n"},
		{"head over", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 2100) + "\r\n\r\n", 431, ""},
		{"line over", "GET /" + strings.Repeat("l", 600) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := dialRaw()
			code, body, closed := rawDo(t, c, r, tc.req)
			if code != tc.status || tc.text != "" && body != tc.text || !closed {
				t.Fatalf("%d %q (close %v), want %d %q and close", code, body, closed, tc.status, tc.text)
			}
		})
	}
}

// bigApp serves /big (50 MiB with a Content-Length, logging when Node
// handed the last byte to the kernel) and /upload (logging what it got).
const bigApp = `const http = require('http');
const chunk = Buffer.alloc(1 << 20, 'z');
http.createServer((req, res) => {
  if (req.url === '/big') {
    res.setHeader('Content-Length', 50 * chunk.length);
    let i = 0;
    const more = () => {
      while (i < 50) {
        i++;
        if (!res.write(chunk)) { res.once('drain', more); return; }
      }
      res.end(() => console.log('big sent'));
    };
    more();
    return;
  }
  let n = 0;
  console.log('request arrived ' + req.url);
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => { console.log('upload got ' + n + ' bytes, content-length ' + req.headers['content-length']); res.end('ok'); });
}).listen(3000, () => console.log('big app listening'));
`

// status reads berth status --json for app.
func status(t *testing.T, app string) appStatus {
	t.Helper()
	out, err := exec.Command(berthBin, "status", "--json", app).CombinedOutput()
	if err != nil {
		t.Fatalf("berth status: %v\n%s", err, out)
	}
	var st appStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	return st
}

// TestSlowClientsHoldNoWorker: a client reading slowly a 50 MiB response
// leaves the worker idle (in flight 0 in berth status) while it reads;
// a client uploading slowly is not in flight at the app until its body
// is complete.
func TestSlowClientsHoldNoWorker(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	app := t.TempDir()
	if err := os.WriteFile(filepath.Join(app, "app.js"), []byte(bigApp), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBerth(t, app, "--workers", "1", "--name", "slowcl")
	b.WaitFor(`big app listening`, 20*time.Second)
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	addr := strings.TrimPrefix(b.URL, "http://")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No SetReadBuffer: a receive buffer smaller than loopback's 64 KiB
	// segments stalls Linux's sender on its own. 50 MiB is more than the
	// kernel's buffers on both sides hold.
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(c, 1024)
	start := time.Now()
	read := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sent := false
	for !sent {
		// 1 KB a second while the app sends.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.ReadFull(br, make([]byte, 1024))
		read += n
		if err != nil {
			t.Fatalf("slow read: %v", err)
		}
		<-tick.C
		sent = strings.Contains(b.Output(), "big sent")
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the app could not send 50 MiB in 30 s to a client reading 1 KB/s (read %d bytes)", read)
		}
	}
	if st := status(t, "slowcl"); len(st.Workers) != 1 || st.Workers[0].Inflight != 0 {
		t.Fatalf("worker in flight while a slow client drains: %+v", st.Workers)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.Copy(io.Discard, br)
	if total := int64(read) + rest; total < 50<<20 {
		t.Fatalf("client got %d bytes in all (%v), want the head and 50 MiB", total, err)
	}

	// A slow upload: the app sees nothing until the body is whole.
	u, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	io.WriteString(u, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
	for i := 0; i < 2; i++ {
		io.WriteString(u, strings.Repeat("u", 1000))
		time.Sleep(500 * time.Millisecond) // the slow client
		if strings.Contains(b.Output(), "request arrived /upload") {
			t.Fatal("the app saw the upload before its body was complete")
		}
		if st := status(t, "slowcl"); st.Workers[0].Inflight != 0 {
			t.Fatalf("worker in flight during a slow upload: %+v", st.Workers)
		}
	}
	io.WriteString(u, strings.Repeat("u", 1000))
	b.WaitFor(`upload got 3000 bytes, content-length 3000`, 10*time.Second)
}

// TestStaticDirConfined: berth may run as root, so the app's owner can
// neither point public/ outside the app by a symbolic link nor name an
// absolute static directory in berth.json, nor choose TLS key files.
func TestStaticDirConfined(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "shadow"), []byte("secret"), 0o600)
	app := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(app, "public")); err != nil {
		t.Fatal(err)
	}
	next := balancer.HandlerFunc(func(*balancer.Exchange) {})
	var cleanups []func()
	cfg := &serveConfig{AppDir: app, Static: "on"}
	if _, err := staticLink(cfg, next, slog.New(slog.DiscardHandler), &cleanups); err == nil || !strings.Contains(err.Error(), "inside the app directory") {
		t.Errorf("public/ linked outside the app: %v, want an error", err)
	}
	// A link inside the app is fine.
	os.Remove(filepath.Join(app, "public"))
	os.Mkdir(filepath.Join(app, "dist"), 0o755)
	os.Symlink("dist", filepath.Join(app, "public"))
	if h, err := staticLink(cfg, next, slog.New(slog.DiscardHandler), &cleanups); err != nil || h == nil || len(cleanups) == 0 {
		t.Errorf("public/ linked to dist/: %v", err)
	}
	for _, c := range cleanups {
		c()
	}

	for _, js := range []string{`{"static_dir": "` + outside + `"}`, `{"tls_cert": "/etc/ssl/x.pem"}`, `{"tls_key": "/etc/shadow"}`} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, configFile), []byte(js), 0o644)
		if _, err := parseServe([]string{dir}, io.Discard); err == nil || !strings.Contains(err.Error(), "command line") {
			t.Errorf("berth.json %s: %v, want refused", js, err)
		}
	}
	if _, err := parseServe([]string{t.TempDir(), "--static-dir", outside}, io.Discard); err != nil {
		t.Errorf("absolute --static-dir on the command line: %v", err)
	}
}
