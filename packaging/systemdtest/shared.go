package systemdtest

import (
	"context"
	"sync"
	"testing"
)

// Shared is one container shared by the tests of a package. It boots on the
// first call to Machine, and the test package's TestMain closes it after
// m.Run (see the package doc). The zero value boots with the zero Config.
type Shared struct {
	// Config describes the container; read at the first call to Machine.
	Config Config

	mu      sync.Mutex // protects the fields below
	started bool
	m       *Machine
	err     error
}

// Machine returns the shared container, booting it on the first call. It
// skips t like Boot on a machine that cannot run containers, and fails t if
// the boot failed (the failure is remembered: every later caller fails with
// it instead of booting again).
func (s *Shared) Machine(t testing.TB) *Machine {
	t.Helper()
	need(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		ctx, cancel := context.WithTimeout(context.Background(), s.Config.bootTimeout())
		s.m, s.err = Start(ctx, s.Config)
		cancel()
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.m
}

// Close powers the shared container off if it was booted. Call it from
// TestMain after m.Run.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		return nil
	}
	return s.m.Close()
}
