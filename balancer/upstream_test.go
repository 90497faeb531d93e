package balancer

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"berth/balancer/loop"
)

// A loop's Tasks take and give back their worker connections without
// the Upstream's lock: a Task parked on a lock that another loop holds
// stalls its whole loop (DESIGN.md, the loop engine). The lock is held
// for the whole test.
func TestLoopConnsTakeNoSharedLock(t *testing.T) {
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {})
	lp, err := loop.New(loop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lp.Close() })
	up.mu.Lock()
	defer up.mu.Unlock()
	done := make(chan error, 1)
	lp.Go(func(task *loop.Task) {
		uc, err := up.getConn(context.Background(), task)
		if err != nil {
			done <- err
			return
		}
		up.putConn(uc)
		again, err := up.getConn(context.Background(), task)
		if err == nil && again != uc {
			err = errors.New("the idle connection was not reused")
		}
		if again != nil {
			again.c.Close()
		}
		done <- err
	})
	returnsWithoutLock(t, done, "a loop's Task waited on Upstream.mu for a worker connection")
}
