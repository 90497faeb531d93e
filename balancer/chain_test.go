package balancer

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestExchangeNowReadsOnce: an exchange's Now reads the clock at its
// first call and returns that reading after; a new exchange reads it
// again.
func TestExchangeNowReadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var x Exchange
		first := x.Now()
		if !first.Equal(time.Now()) {
			t.Fatalf("first Now %v, want the clock's %v", first, time.Now())
		}
		time.Sleep(time.Second)
		if got := x.Now(); !got.Equal(first) {
			t.Errorf("second Now %v, want the first reading %v", got, first)
		}
		var y Exchange
		if got := y.Now(); !got.Equal(first.Add(time.Second)) {
			t.Errorf("a new exchange's Now %v, want %v", got, first.Add(time.Second))
		}
	})
}
