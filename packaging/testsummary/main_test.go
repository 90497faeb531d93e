package main

import (
	"bytes"
	"strings"
	"testing"
)

// run is go test -json of two packages: one with a pass, a failure, two
// skips for the same reason and one for another; one that fails to build.
const run = `{"Action":"start","Package":"berth/a"}
{"Action":"run","Package":"berth/a","Test":"TestOK"}
{"Action":"output","Package":"berth/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"berth/a","Test":"TestOK"}
{"Action":"run","Package":"berth/a","Test":"TestBad"}
{"Action":"output","Package":"berth/a","Test":"TestBad","Output":"    a_test.go:9: got 2, want 3\n"}
{"Action":"fail","Package":"berth/a","Test":"TestBad"}
{"Action":"run","Package":"berth/a","Test":"TestRoot1"}
{"Action":"output","Package":"berth/a","Test":"TestRoot1","Output":"    testenv.go:29: skipping: needs root (set BERTH_TEST_STRICT=1 to make this a failure)\n"}
{"Action":"skip","Package":"berth/a","Test":"TestRoot1"}
{"Action":"run","Package":"berth/a","Test":"TestRoot2/sub"}
{"Action":"output","Package":"berth/a","Test":"TestRoot2/sub","Output":"    testenv.go:29: skipping: needs root (set BERTH_TEST_STRICT=1 to make this a failure)\n"}
{"Action":"skip","Package":"berth/a","Test":"TestRoot2/sub"}
{"Action":"run","Package":"berth/a","Test":"TestBox"}
{"Action":"output","Package":"berth/a","Test":"TestBox","Output":"    machine.go:50: skipping: systemd-nspawn not found on PATH (set BERTH_TEST_STRICT=1 to make this a failure)\n"}
{"Action":"skip","Package":"berth/a","Test":"TestBox"}
{"Action":"output","Package":"berth/a","Output":"FAIL\n"}
{"Action":"output","Package":"berth/a","Output":"FAIL\tberth/a\t0.1s\n"}
{"Action":"fail","Package":"berth/a"}
{"ImportPath":"berth/b","Action":"build-output","Output":"b/b.go:3:1: syntax error\n"}
{"ImportPath":"berth/b","Action":"build-fail"}
{"Action":"fail","Package":"berth/b","FailedBuild":"berth/b"}
`

func TestSummary(t *testing.T) {
	var live, out bytes.Buffer
	s := newSummary(&live)
	if err := s.read(strings.NewReader(run)); err != nil {
		t.Fatal(err)
	}
	s.print(&out)
	text := out.String()
	t.Logf("summary:\n%s", text)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if got := lines[len(lines)-1]; got != "1 passed, 1 failed, 3 skipped" {
		t.Errorf("last line %q", got)
	}
	for _, want := range []string{
		"5 tests and subtests ran",
		"  berth/a TestBad",
		"    2  needs root\n       a.TestRoot1, a.TestRoot2/sub\n",
		"    1  systemd-nspawn not found on PATH\n",
		"berth/b (build failed)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if !strings.Contains(text, "packages that failed outside a test: berth/b (build failed)\n") {
		t.Error("berth/a failed through a test, not outside one; berth/b once, as a build failure")
	}
	for _, want := range []string{"a_test.go:9: got 2, want 3", "FAIL\tberth/a\t0.1s", "syntax error"} {
		if !strings.Contains(live.String(), want) {
			t.Errorf("live output lacks %q:\n%s", want, live.String())
		}
	}
	if strings.Contains(live.String(), "=== RUN   TestOK") {
		t.Error("a passing test's output was printed")
	}
}
