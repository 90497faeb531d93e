// Command testsummary runs `go test -json ARGS…` and prints what `go test`
// would (each package's result line, the output of failing tests), then a
// summary: how many tests ran, passed, failed and were skipped, the
// failures, and the skip reasons grouped, so that a run on a laptop shows
// which tests (the systemd ones, the root ones) did not run and why. Its
// last line is always "N passed, N failed, N skipped". It exits 1 when a
// test or a package failed, or go test did.
//
// Usage (from the Makefile's test target):
//
//	go run ./packaging/testsummary [-go GO] [--] GO_TEST_ARGS…
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

func main() {
	goBin := flag.String("go", "go", "the go command")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testsummary [-go GO] [--] GO_TEST_ARGS…")
		flag.PrintDefaults()
	}
	flag.Parse()
	cmd := exec.Command(*goBin, append([]string{"test", "-json"}, flag.Args()...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	s := newSummary(os.Stdout)
	readErr := s.read(stdout)
	waitErr := cmd.Wait()
	s.print(os.Stdout)
	switch {
	case readErr != nil:
		fmt.Fprintln(os.Stderr, "testsummary: reading go test -json:", readErr)
		os.Exit(1)
	case waitErr != nil && s.failed == 0 && len(s.failedPkgs) == 0:
		var exit *exec.ExitError
		if !errors.As(waitErr, &exit) {
			fmt.Fprintln(os.Stderr, "testsummary: go test:", waitErr)
		}
		os.Exit(1)
	case waitErr != nil || s.failed > 0 || len(s.failedPkgs) > 0:
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// testKey names a test of a package.
type testKey struct{ pkg, test string }

// summary follows a run; its zero value is not usable (newSummary).
type summary struct {
	live                    io.Writer            // where package lines and failing tests' output go as they come
	output                  map[testKey][]string // the output of running tests
	passed, failed, skipped int
	failures                []testKey
	skips                   map[string][]testKey // by reason
	failedPkgs              []string             // packages that failed outside any test (build, TestMain, timeout)
	pkgHadTestFail          map[string]bool
}

func newSummary(live io.Writer) *summary {
	return &summary{live: live, output: map[testKey][]string{}, skips: map[string][]testKey{}, pkgHadTestFail: map[string]bool{}}
}

// read consumes go test -json output.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintf(s.live, "%s\n", line) // not an event: pass it on
			continue
		}
		s.handle(e)
	}
	return sc.Err()
}

func (s *summary) handle(e event) {
	k := testKey{e.Package, e.Test}
	switch {
	case e.Action == "build-output":
		io.WriteString(s.live, e.Output)
	case e.Action == "build-fail":
		s.failedPkgs = append(s.failedPkgs, e.ImportPath+" (build failed)")
		if f := strings.Fields(e.ImportPath); len(f) > 0 {
			s.pkgHadTestFail[f[0]] = true // its "fail" event says no more
		}
	case e.Test == "" && e.Action == "output":
		if e.Output != "PASS\n" && e.Output != "FAIL\n" && !strings.HasPrefix(e.Output, "=== ") {
			io.WriteString(s.live, e.Output)
		}
	case e.Test == "" && e.Action == "fail":
		if !s.pkgHadTestFail[e.Package] {
			s.failedPkgs = append(s.failedPkgs, e.Package)
		}
	case e.Test == "":
	case e.Action == "output":
		s.output[k] = append(s.output[k], e.Output)
	case e.Action == "pass":
		s.passed++
		delete(s.output, k)
	case e.Action == "fail":
		s.failed++
		s.failures = append(s.failures, k)
		s.pkgHadTestFail[e.Package] = true
		io.WriteString(s.live, strings.Join(s.output[k], ""))
		delete(s.output, k)
	case e.Action == "skip":
		s.skipped++
		why := skipReason(s.output[k])
		s.skips[why] = append(s.skips[why], k)
		delete(s.output, k)
	}
}

// fileLine is the "file_test.go:12: " in front of a test's log line.
var fileLine = regexp.MustCompile(`^\s+[\w.-]+\.go:\d+: `)

// skipReason is the message a skipped test logged last, without its
// file:line, the testenv "skipping: " prefix and its strict-mode hint.
func skipReason(output []string) string {
	why := ""
	for _, o := range output {
		if fileLine.MatchString(o) {
			why = strings.TrimSpace(fileLine.ReplaceAllString(o, ""))
		}
	}
	why = strings.TrimPrefix(why, "skipping: ")
	if i := strings.Index(why, " (set BERTH_TEST_STRICT=1"); i >= 0 {
		why = why[:i]
	}
	if why == "" {
		why = "(no reason given)"
	}
	return why
}

// print writes the summary; its last line is "N passed, N failed, N skipped".
func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n== test summary: %d tests and subtests ran ==\n", s.passed+s.failed+s.skipped)
	if len(s.failures) > 0 {
		fmt.Fprintf(w, "failed (%d):\n", len(s.failures))
		for _, k := range s.failures {
			fmt.Fprintf(w, "  %s %s\n", k.pkg, k.test)
		}
	}
	if len(s.failedPkgs) > 0 {
		fmt.Fprintf(w, "packages that failed outside a test: %s\n", strings.Join(s.failedPkgs, ", "))
	}
	if len(s.skips) > 0 {
		reasons := make([]string, 0, len(s.skips))
		for r := range s.skips {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if len(s.skips[reasons[i]]) != len(s.skips[reasons[j]]) {
				return len(s.skips[reasons[i]]) > len(s.skips[reasons[j]])
			}
			return reasons[i] < reasons[j]
		})
		fmt.Fprintf(w, "skipped (%d), by reason:\n", s.skipped)
		for _, r := range reasons {
			ks := s.skips[r]
			var names []string
			for i, k := range ks {
				if i == 4 {
					names = append(names, fmt.Sprintf("and %d more", len(ks)-4))
					break
				}
				names = append(names, shortPkg(k.pkg)+"."+k.test)
			}
			fmt.Fprintf(w, "  %3d  %s\n       %s\n", len(ks), r, strings.Join(names, ", "))
		}
		fmt.Fprintln(w, "(BERTH_TEST_STRICT=1, as CI sets it, turns these skips into failures)")
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
}

// shortPkg is the last element of an import path.
func shortPkg(p string) string { return p[strings.LastIndex(p, "/")+1:] }
