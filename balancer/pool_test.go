package balancer

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A request picks its worker without the pool's lock: on the event-loop
// engine a Task parked on a lock that another loop holds stalls its whole
// loop (DESIGN.md, the loop engine). The lock is held for the whole test.
func TestPickTakesNoLock(t *testing.T) {
	p := NewPool(PoolConfig{})
	w1, w2 := &Upstream{Name: "w1"}, &Upstream{Name: "w2"}
	p.Add(w1)
	p.Add(w2)
	p.mu.Lock()
	defer p.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		a, err := p.Acquire(context.Background(), nil)
		if err != nil {
			done <- err
			return
		}
		b, err := p.AcquirePreferring(context.Background(), []byte("w1"), nil)
		if err == nil && b != w1 {
			err = fmt.Errorf("the preferred worker w1 was not taken: got %s", b.Name)
		}
		if err == nil && a == b {
			if c, err2 := p.Acquire(context.Background(), nil); err2 != nil || c == a {
				err = fmt.Errorf("least-busy took the busier worker again (%v)", err2)
			}
		}
		p.Release(a)
		if b != nil {
			p.Release(b)
		}
		done <- err
	}()
	returnsWithoutLock(t, done, "Acquire waited on Pool.mu with workers ready")
}

// returnsWithoutLock waits for the result of code run while the test holds
// a lock that code must not take: a result that does not come within 5 s
// fails t with stuck, an error fails it too.
func returnsWithoutLock(t *testing.T, done <-chan error, stuck string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(stuck)
	}
}

// A pick that read the workers just before one was taken out of service
// never hands it a request once its drain finished: the lock-free pick
// counts the request, sees the worker retired and gives it back.
func TestPickGivesBackARetiredWorker(t *testing.T) {
	p := NewPool(PoolConfig{})
	victim := &Upstream{Name: "victim"}
	p.Add(victim)
	before := p.snapshot() // what a pick racing the Remove read
	if err := p.Drain(t.Context(), victim); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if u := p.tryPick(before, nil, nil); u != nil {
		p.Release(u)
		t.Fatalf("a pick handed %s a request after its drain finished", u.Name)
	}
	if n := victim.Inflight(); n != 0 {
		t.Errorf("the drained worker counts %d requests in flight", n)
	}
}
