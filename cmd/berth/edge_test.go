package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
