package spawner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindStartupFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
		err   string
	}{
		{name: "package main", files: map[string]string{"package.json": `{"main":"lib/server.js"}`, "lib/server.js": "", "app.js": ""}, want: "lib/server.js"},
		{name: "main without extension", files: map[string]string{"package.json": `{"main":"server"}`, "server.js": ""}, want: "server.js"},
		{name: "main is a directory", files: map[string]string{"package.json": `{"main":"lib"}`, "lib/index.js": ""}, want: "lib/index.js"},
		{name: "missing main", files: map[string]string{"package.json": `{"main":"gone.js"}`}, err: `"main": "gone.js", which does not exist`},
		{name: "app.js first", files: map[string]string{"app.js": "", "index.js": ""}, want: "app.js"},
		{name: "server.js", files: map[string]string{"package.json": `{"name":"x"}`, "server.js": ""}, want: "server.js"},
		{name: "nothing", files: map[string]string{"README": ""}, err: "no startup file"},
		{name: "bad package.json", files: map[string]string{"package.json": `{`}, err: "package.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tc.files {
				os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
				os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
			}
			got, err := findStartupFile(dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestAppArgv(t *testing.T) {
	a := App{Dir: "/srv/shop", StartupFile: "app.js", Node: "/usr/bin/node", NodeArgs: []string{"--env-file=.env"}}
	got := strings.Join(a.Argv("/run/loader.cjs"), " ")
	if got != "/usr/bin/node --env-file=.env --require /run/loader.cjs /srv/shop/app.js" {
		t.Errorf("got %q", got)
	}
	if g := (App{Type: AppGeneric, Command: []string{"gunicorn", "--bind", "fd://3"}}).Argv("x"); strings.Join(g, " ") != "gunicorn --bind fd://3" {
		t.Errorf("generic: %q", g)
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string]string{
		`gunicorn --bind fd://3 app:app`: "gunicorn|--bind|fd://3|app:app",
		`python3 -c 'print("a b")'`:      `python3|-c|print("a b")`,
		`a "b \"c\"" d\ e`:               `a|b "c"|d e`,
		`  spaced   out  `:               "spaced|out",
	} {
		got, err := SplitCommand(in)
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("%s: got %q, %v; want %s", in, got, err, want)
		}
	}
	if _, err := SplitCommand(`echo "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestLineWriterTagsAndKeepsTail(t *testing.T) {
	var out strings.Builder
	w := newLineWriter(&out, "[a w1] ", 2)
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r\nthree\nfour"))
	w.Flush()
	if out.String() != "[a w1] one\n[a w1] two\n[a w1] three\n[a w1] four\n" {
		t.Errorf("output %q", out.String())
	}
	if tail := w.Tail(); strings.Join(tail, ",") != "three,four" {
		t.Errorf("tail %q", tail)
	}
}
