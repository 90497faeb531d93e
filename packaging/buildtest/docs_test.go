package buildtest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"berth/packaging/testenv"
)

// root is the repository root, relative to this package's directory.
const root = "../.."

func readRoot(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// version is the one version of berth, from packaging/VERSION.
func version(t *testing.T) string {
	t.Helper()
	v := strings.TrimSpace(readRoot(t, "packaging/VERSION"))
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+([~+][0-9A-Za-z.]+)?$`).MatchString(v) {
		t.Fatalf("packaging/VERSION holds %q, not a version such as 1.2.3", v)
	}
	return v
}

func TestVersionsAgree(t *testing.T) {
	v := version(t)

	changelog := readRoot(t, "debian/changelog")
	m := regexp.MustCompile(`^berth \(([^)]+)\) `).FindStringSubmatch(changelog)
	if m == nil {
		t.Fatalf("debian/changelog: first line %q is not a berth entry", firstLine(changelog))
	}
	if m[1] != v {
		t.Errorf("debian/changelog is at %s, packaging/VERSION at %s: add a changelog entry (dch -v %s)", m[1], v, v)
	}

	spec := readRoot(t, "rpm/berth.spec")
	m = regexp.MustCompile(`(?m)^Version:\s*(\S+)$`).FindStringSubmatch(spec)
	if m == nil {
		t.Fatal("rpm/berth.spec has no Version: line")
	}
	if m[1] != v {
		t.Errorf("rpm/berth.spec Version: is %s, packaging/VERSION is %s", m[1], v)
	}
	// The newest %changelog entry names the version too: "* DATE WHO - V-R".
	m = regexp.MustCompile(`(?m)^%changelog\n\* .* - (\S+)-\S+$`).FindStringSubmatch(spec)
	if m == nil {
		t.Fatal("rpm/berth.spec: no changelog entry ending in VERSION-RELEASE")
	}
	if m[1] != v {
		t.Errorf("rpm/berth.spec: newest %%changelog entry is for %s, packaging/VERSION is %s", m[1], v)
	}

	// The man page takes the version from make install, never its own.
	if th := firstMatch(readRoot(t, "packaging/man/berth.1"), `(?m)^\.TH .*$`); !strings.Contains(th, "@VERSION@") {
		t.Errorf("packaging/man/berth.1: .TH line %q should carry @VERSION@ (filled in by make install)", th)
	}
}

func TestManPageHasNoWarnings(t *testing.T) {
	groff := testenv.NeedCommand(t, "groff")
	cmd := exec.Command(groff, "-man", "-ww", "-z", "-t", "-Tutf8", filepath.Join(root, "packaging/man/berth.1"))
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -ww on berth.1: %v\n%s", err, out)
	}
}

func TestCompletionParses(t *testing.T) {
	bash := testenv.NeedCommand(t, "bash")
	if out, err := exec.Command(bash, "-n", filepath.Join(root, "packaging/completion/berth.bash")).CombinedOutput(); err != nil {
		t.Errorf("bash -n berth.bash: %v\n%s", err, out)
	}
}

// TestCompletionOffers runs the completion function in bash, with
// bash-completion's helpers stubbed, for a few command lines.
func TestCompletionOffers(t *testing.T) {
	bash := testenv.NeedCommand(t, "bash")
	const stubs = `
_init_completion() {
	words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
	cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
}
_filedir() { COMPREPLY=(FILES); }
complete() { :; }
`
	for _, tc := range []struct {
		line string // the words typed; the last one is being completed
		want string // COMPREPLY, space-separated
	}{
		{line: "berth s", want: "serve status"},
		{line: "berth serve --max-w", want: "--max-workers"},
		{line: "berth serve --spawner e", want: "exec"},
		{line: "berth serve --port ", want: ""},
		{line: "berth serve ", want: "FILES"},
		{line: "berth init /srv/app --f", want: "--force"},
		{line: "berth logs -", want: "-f -n --user"},
		{line: "berth restart --t", want: "--timeout"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			script := stubs + "source " + filepath.Join(root, "packaging/completion/berth.bash") + `
COMP_WORDS=($LINE)
[[ $LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_berth
echo "${COMPREPLY[*]}"
`
			cmd := exec.Command(bash, "-c", script)
			cmd.Env = append(os.Environ(), "LINE="+tc.line)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("completing %q offers %q, want %q", tc.line, got, tc.want)
			}
		})
	}
}

// TestCLIDocumented builds berth and checks that berth(1) and the bash
// completion name every command `berth help` lists and every flag of every
// command, and name nothing the binary lacks.
func TestCLIDocumented(t *testing.T) {
	v := version(t)
	bin := buildBerth(t, v)

	out := run(t, bin, "version")
	if got, want := strings.TrimSpace(out), "berth "+v; got != want {
		t.Errorf("berth version says %q, want %q", got, want)
	}

	cmds := helpCommands(t, run(t, bin, "help"))
	if !slices.Contains(cmds, "serve") {
		t.Fatalf("berth help lists %q, no serve: is the parser out of date?", cmds)
	}
	man := readRoot(t, "packaging/man/berth.1")
	compl := readRoot(t, "packaging/completion/berth.bash")

	manCmds := manCommands(man)
	complCmds := strings.Fields(firstMatch(compl, `local commands="([^"]*)"`))
	for _, c := range cmds {
		if !slices.Contains(manCmds, c) {
			t.Errorf("berth help lists %q; berth(1) COMMANDS does not", c)
		}
		if !slices.Contains(complCmds, c) {
			t.Errorf("berth help lists %q; the completion's commands do not", c)
		}
	}
	for _, c := range manCmds {
		if !slices.Contains(cmds, c) {
			t.Errorf("berth(1) documents command %q; berth help does not list it", c)
		}
	}
	for _, c := range complCmds {
		if !slices.Contains(cmds, c) {
			t.Errorf("the completion offers command %q; berth help does not list it", c)
		}
	}

	manFlags := manFlagSet(man)
	for _, c := range cmds {
		if c == "version" || c == "help" {
			continue
		}
		flags := commandFlags(t, bin, c)
		for _, f := range flags {
			if !manFlags[dashed(f)] {
				t.Errorf("berth %s has %s; berth(1) does not mention it", c, dashed(f))
			}
			if !regexp.MustCompile(`[" \t]` + regexp.QuoteMeta(dashed(f)) + `[" \t\n]`).MatchString(compl) {
				t.Errorf("berth %s has %s; the completion does not offer it", c, dashed(f))
			}
		}
		if c == "serve" {
			for f := range serveSectionFlags(man) {
				if !slices.Contains(flags, f) {
					t.Errorf("berth(1) SERVE OPTIONS documents --%s; berth serve -h does not list it", f)
				}
			}
			checkExampleConfig(t, flags)
		}
	}
}

// checkExampleConfig checks that every key of packaging/berth.json.example
// is a serve flag (berth rejects unknown keys).
func checkExampleConfig(t *testing.T, serveFlags []string) {
	var cfg map[string]any
	if err := json.Unmarshal([]byte(readRoot(t, "packaging/berth.json.example")), &cfg); err != nil {
		t.Fatalf("packaging/berth.json.example: %v", err)
	}
	if len(cfg) == 0 {
		t.Error("packaging/berth.json.example sets nothing")
	}
	for k := range cfg {
		if !slices.Contains(serveFlags, strings.ReplaceAll(k, "_", "-")) {
			t.Errorf("packaging/berth.json.example: key %q is not a serve flag; berth would reject it", k)
		}
	}
}

// buildBerth builds cmd/berth with the version stamped as the Makefile does.
func buildBerth(t *testing.T, v string) string {
	t.Helper()
	gobin := testenv.NeedCommand(t, "go")
	bin := filepath.Join(t.TempDir(), "berth")
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-X main.version="+v, "-o", bin, "./cmd/berth")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/berth: %v\n%s", err, out)
	}
	return bin
}

// run runs bin with args and returns its standard output and error.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// helpCommands reads the command names from `berth help`: the first word of
// each line indented by two spaces under "Commands:".
func helpCommands(t *testing.T, help string) []string {
	t.Helper()
	var cmds []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Commands:"):
			in = true
		case in && len(line) > 2 && strings.HasPrefix(line, "  ") && line[2] != ' ':
			// "  serve [APP_DIR]   ..."; deeper lines continue the one above.
			cmds = append(cmds, strings.Fields(line)[0])
		case in && strings.HasPrefix(line, "  "):
		case in && strings.TrimSpace(line) == "":
			if len(cmds) > 0 {
				in = false
			}
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("no commands found in berth help:\n%s", help)
	}
	return cmds
}

// commandFlags runs `berth CMD -h` and returns the flag names it prints
// (Go's flag package: "  -name type" lines).
func commandFlags(t *testing.T, bin, cmd string) []string {
	t.Helper()
	// -h exits 0 or 2 depending on the flag package's mode; only the output
	// matters.
	out, _ := exec.Command(bin, cmd, "-h").CombinedOutput()
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^ {2}--?([a-z][a-z0-9-]*)\b`).FindAllStringSubmatch(string(out), -1) {
		if m[1] != "h" && m[1] != "help" {
			flags = append(flags, m[1])
		}
	}
	if strings.Contains(string(out), "unknown command") {
		t.Errorf("berth help lists %s but berth %s -h says:\n%s", cmd, cmd, out)
	}
	return flags
}

// dashed is how a flag is written: -f for a one-letter flag, --name else.
func dashed(flag string) string {
	if len(flag) == 1 {
		return "-" + flag
	}
	return "--" + flag
}

// manCommands returns the commands berth(1) documents: the first word of
// each tagged paragraph in the COMMANDS section that is not an option.
func manCommands(man string) []string {
	var cmds []string
	for _, tag := range sectionTags(man, "COMMANDS") {
		if f := strings.Fields(tag); len(f) > 0 && !strings.HasPrefix(f[0], "-") {
			cmds = append(cmds, f[0])
		}
	}
	return cmds
}

// serveSectionFlags returns the flags documented as tagged paragraphs in
// SERVE OPTIONS.
func serveSectionFlags(man string) map[string]bool {
	flags := map[string]bool{}
	for _, tag := range sectionTags(man, "SERVE OPTIONS") {
		for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(tag, -1) {
			flags[m[1]] = true
		}
	}
	return flags
}

// manFlagSet returns every --flag and -f mentioned anywhere in berth(1).
func manFlagSet(man string) map[string]bool {
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:^|[^-\w])(--[a-z][a-z0-9-]*|-[a-z])\b`).FindAllStringSubmatch(plain(man), -1) {
		flags[m[1]] = true
	}
	return flags
}

// sectionTags returns, in plain text, the tag line after each .TP in the
// man page section named sh.
func sectionTags(man, sh string) []string {
	var tags []string
	in, tag := false, false
	for _, line := range strings.Split(man, "\n") {
		switch {
		case strings.HasPrefix(line, ".SH "):
			in = strings.Trim(strings.TrimPrefix(line, ".SH "), `"`) == sh
		case !in:
		case line == ".TP":
			tag = true
		case tag:
			tags = append(tags, plain(line))
			tag = false
		}
	}
	return tags
}

// plain strips the man macros and escapes this page uses from roff text.
func plain(s string) string {
	s = regexp.MustCompile(`(?m)^\.(B|I|BI|IB|BR|RB|IR|RI|TP|PP|SH|SS|TH)\b ?`).ReplaceAllString(s, "")
	s = regexp.MustCompile(`\\f[BIRP]`).ReplaceAllString(s, "")
	s = strings.NewReplacer(`\-`, "-", `\(aq`, "'", `"`, "").Replace(s)
	return s
}

func firstMatch(s, expr string) string {
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	switch {
	case m == nil:
		return ""
	case len(m) > 1:
		return m[1]
	default:
		return m[0]
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
