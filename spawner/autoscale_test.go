package spawner

import (
	"testing"
	"time"
)

func TestAutoscaler(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := &Autoscaler{Min: 1, Max: 3, IdleAfter: time.Minute}
	steps := []struct {
		at      time.Duration
		current int
		load    Load
		want    int
	}{
		{0, 1, Load{Ready: 1, Inflight: 0}, 1},               // idle at min
		{1 * time.Second, 1, Load{Ready: 1, Inflight: 1}, 2}, // the only worker is busy: grow
		{2 * time.Second, 2, Load{Ready: 1, Inflight: 3}, 2}, // the new one is still starting: wait for it
		{3 * time.Second, 2, Load{Ready: 2, Queued: 4}, 3},   // requests wait: grow
		{4 * time.Second, 3, Load{Ready: 3, Inflight: 9}, 3}, // at max
		{30 * time.Second, 3, Load{Ready: 3, Inflight: 0}, 3},
		{65 * time.Second, 3, Load{Ready: 3, Inflight: 0}, 2}, // a minute with spare workers: shrink by one
		{70 * time.Second, 2, Load{Ready: 2, Inflight: 0}, 2}, // not again before another minute
		{126 * time.Second, 2, Load{Ready: 2, Inflight: 0}, 1},
		{300 * time.Second, 1, Load{Ready: 1, Inflight: 0}, 1}, // never below min
	}
	for _, s := range steps {
		if got := a.Observe(t0.Add(s.at), s.current, s.load); got != s.want {
			t.Fatalf("at %s with %d workers and %+v: want %d workers, got %d", s.at, s.current, s.load, s.want, got)
		}
	}
}

func TestAutoscalerFixedCount(t *testing.T) {
	a := &Autoscaler{Min: 2, Max: 2}
	if got := a.Observe(time.Now(), 2, Load{Ready: 2, Queued: 50}); got != 2 {
		t.Fatalf("min=max=2 scaled to %d", got)
	}
}

func TestAutoscalerDownToZero(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := &Autoscaler{Min: 0, Max: 2, IdleAfter: time.Minute}
	steps := []struct {
		at      time.Duration
		current int
		load    Load
		want    int
	}{
		{0, 0, Load{}, 0},                                    // nothing comes: no worker
		{1 * time.Second, 0, Load{Queued: 1}, 1},             // a request waits: start one
		{2 * time.Second, 1, Load{Queued: 1}, 1},             // it is starting
		{3 * time.Second, 1, Load{Ready: 1, Inflight: 1}, 2}, // busy: grow
		{4 * time.Second, 2, Load{Ready: 2}, 2},
		{65 * time.Second, 2, Load{Ready: 2}, 1},
		{100 * time.Second, 1, Load{Ready: 1}, 1},
		{126 * time.Second, 1, Load{Ready: 1}, 0}, // a minute without a request: none
	}
	for _, s := range steps {
		if got := a.Observe(t0.Add(s.at), s.current, s.load); got != s.want {
			t.Fatalf("at %s with %d workers and %+v: want %d workers, got %d", s.at, s.current, s.load, s.want, got)
		}
	}
}
