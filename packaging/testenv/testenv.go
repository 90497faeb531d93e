// Package testenv decides what a test does when the machine lacks something
// it needs (root, node, systemd-nspawn, npm packages): skip with a clear
// message on a laptop, fail in CI.
//
// CI sets BERTH_TEST_STRICT=1 (see .ci/run); then every such skip becomes a
// failure, so a test that needs systemd cannot silently pass by not running.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing prerequisites fail tests instead of
// skipping them (BERTH_TEST_STRICT=1, set by CI).
func Strict() bool { return os.Getenv("BERTH_TEST_STRICT") == "1" }

// Need skips t (or fails it, under Strict) with why when ok is false.
func Need(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Strict() {
		t.Fatalf("missing prerequisite (BERTH_TEST_STRICT=1 makes this fatal): %s", why)
	}
	t.Skipf("skipping: %s (set BERTH_TEST_STRICT=1 to make this a failure)", why)
}

// NeedRoot needs the test to run as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	Need(t, os.Geteuid() == 0, "needs root")
}

// NeedCommand needs name on PATH and returns its path.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, name+" not found on PATH")
	return p
}
