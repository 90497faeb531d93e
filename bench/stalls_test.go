package main

import (
	"testing"

	"berth/packaging/testenv"
)

// The watch runs one pinned real-time thread per CPU; as root it can.
func TestStallWatchRuns(t *testing.T) {
	testenv.NeedRoot(t)
	sw := startStallWatch()
	if n := sw.count(); n < 0 {
		t.Fatal("the stall watch could not start its real-time threads as root")
	}
}
