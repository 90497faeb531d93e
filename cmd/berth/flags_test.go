package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMistypedFlag: one line naming the closest flag and where the help
// is, for every subcommand, not the whole usage.
func TestMistypedFlag(t *testing.T) {
	app := writeApp(t, "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", app, "--wrkers", "3"}, "berth serve: unknown flag --wrkers (did you mean --workers?); 'berth serve -h' lists the flags"},
		{[]string{"serve", "--sapwn-timeout=3s", app}, "did you mean --spawn-timeout?"},
		{[]string{"status", "--jsno"}, "berth status: unknown flag --jsno (did you mean --json?)"},
		{[]string{"restart", "shop", "--timeuot", "1m"}, "did you mean --timeout?"},
		{[]string{"logs", "shop", "--usr"}, "did you mean --user?"},
		{[]string{"init", app, "--port", "80", "--froce"}, "did you mean --force?"},
		{[]string{"serve", app, "--frobnicate"}, "berth serve: unknown flag --frobnicate; 'berth serve -h' lists the flags"},
		{[]string{"serve", app, "--workers", "many"}, `invalid value "many" for flag --workers`},
		{[]string{"serve", app, "--port"}, "flag needs an argument: --port; 'berth serve -h' lists the flags"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tt.want)
			}
			if n := strings.Count(strings.TrimSpace(errOut.String()), "\n"); n != 0 {
				t.Errorf("%d lines on stderr, want one:\n%s", n+1, errOut.String())
			}
		})
	}
}

// TestSubcommandHelp: every subcommand's -h starts with its synopsis and
// a sentence, then the flags; none prints Go's bare "Usage of".
func TestSubcommandHelp(t *testing.T) {
	for _, c := range []string{"serve", "status", "restart", "init", "logs"} {
		t.Run(c, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run([]string{c, "-h"}, &out, &errOut); code != 0 {
				t.Errorf("exit %d, want 0", code)
			}
			help := out.String() + errOut.String()
			if !regexp.MustCompile(`^usage: berth ` + c + ` .*\n\n[A-Z][^\n]+`).MatchString(help) {
				t.Errorf("help does not start with a synopsis and a sentence:\n%s", help)
			}
			if strings.Contains(help, "Usage of") {
				t.Errorf("help has Go's bare usage line:\n%s", help)
			}
			if !strings.Contains(help, "\nFlags:\n  -") {
				t.Errorf("help lists no flags:\n%s", help)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"wrkers", "workers", 1}, {"wokrers", "workers", 1}, {"json", "json", 0}, {"", "abc", 3}, {"port", "sport", 1}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestConfigErrorTexts: berth.json mistakes are explained, with the fix.
func TestConfigErrorTexts(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"duration as a number", `{"spawn_timeout": 30}`, []string{`key "spawn_timeout": 30 is a number; use a string like "30s"`}},
		{"count as a string", `{"workers": "2"}`, []string{`key "workers": "2" is a string; want a number, like "workers": 2`}},
		{"fraction", `{"max_queue": 2.5}`, []string{`key "max_queue": 2.5 is a number; want a whole number`}},
		{"switch as a string", `{"port_env": "yes"}`, []string{`key "port_env": "yes" is a string; want true or false`}},
		{"string as a number", `{"startup_file": 1}`, []string{`key "startup_file": 1 is a number; want a string, like "startup_file": "1"`}},
		{"env value as a number", `{"env": {"PORT_OFFSET": 2}}`, []string{`key "env": "PORT_OFFSET": 2 is not a string`}},
		{"list of numbers", `{"node_arg": [1]}`, []string{`key "node_arg": list item 1 is not a string`}},
		{"object for a count", `{"workers": {"n": 2}}`, []string{`key "workers": {"n": 2} is an object; want a number`}},
		{"admin-only key", `{"log_file": "/etc/passwd"}`, []string{`key "log_file" can only be given on berth's command line`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeApp(t, tc.file)
			var stderr bytes.Buffer
			if code := run([]string{"serve", dir}, &bytes.Buffer{}, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("error %q\nlacks %q", stderr.String(), w)
				}
			}
		})
	}
}

// TestConfigKnownKeys: the unknown-key error lists only the keys the file
// may set.
func TestConfigKnownKeys(t *testing.T) {
	dir := writeApp(t, `{"wrokers": 2}`)
	_, err := parseServe([]string{dir}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	msg := err.Error()
	for _, want := range []string{"workers", "min_workers", "spawn_timeout", "env"} {
		if !regexp.MustCompile(`[ :,]` + want + `(,|\))`).MatchString(msg) {
			t.Errorf("error %q does not list %s", msg, want)
		}
	}
	for k := range adminOnly {
		key := strings.ReplaceAll(k, "-", "_")
		if regexp.MustCompile(`[ :,]` + key + `(,|\))`).MatchString(msg) {
			t.Errorf("error %q lists %s, which berth.json may not set", msg, key)
		}
	}
}

// TestDocsAgreeOnFileKeys: berth(1) and the README name the same keys as
// the ones berth.json may not set, and they are the ones berth refuses.
func TestDocsAgreeOnFileKeys(t *testing.T) {
	want := map[string]bool{}
	for k := range adminOnly {
		want[k] = true
	}
	sentence := regexp.MustCompile(`(?s)cannot be set (?:in|from)\s+(?:\S*berth\.json\S*)[^.]*?:(.*?)\.`)
	flagRe := regexp.MustCompile(`--([a-z][a-z-]*)`)
	for _, doc := range []string{"../../packaging/man/berth.1", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(`\-`), []byte("-")) // roff's minus
		m := sentence.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s has no sentence \"… cannot be set in berth.json: --a, --b.\"", doc)
			continue
		}
		got := map[string]bool{}
		for _, f := range flagRe.FindAllSubmatch(m[1], -1) {
			got[string(f[1])] = true
		}
		for k := range want {
			if !got[k] {
				t.Errorf("%s does not name --%s among the options berth.json cannot set", doc, k)
			}
		}
		for k := range got {
			if !want[k] {
				t.Errorf("%s names --%s among the options berth.json cannot set; berth accepts it there", doc, k)
			}
		}
	}
}
