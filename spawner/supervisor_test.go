package spawner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"berth/packaging/testenv"
)

// fakeWorker is a Worker the test ends by hand.
type fakeWorker struct {
	name   string
	pid    int
	done   chan struct{}
	once   sync.Once
	served atomic.Uint64
	memory atomic.Uint64
}

func (w *fakeWorker) Name() string                    { return w.name }
func (w *fakeWorker) Addr() (network, address string) { return "unix", "/nowhere" }
func (w *fakeWorker) Pid() int                        { return w.pid }
func (w *fakeWorker) Done() <-chan struct{}           { return w.done }
func (w *fakeWorker) Err() error                      { return errors.New("exit status 1") }
func (w *fakeWorker) Stop(context.Context) error      { w.exit(); return nil }
func (w *fakeWorker) exit()                           { w.once.Do(func() { close(w.done) }) }
func (w *fakeWorker) Usage(context.Context) (Usage, error) {
	return Usage{Memory: w.memory.Load(), CPU: time.Second}, nil
}

// fakeBackend starts fakeWorkers, or fails while failing is set. While
// hang is set, a start runs (pid 1000+) until its ctx ends.
type fakeBackend struct {
	mu       sync.Mutex // protects all below
	pid      int
	failing  error
	hang     bool
	attempts []time.Time
	released []string
	started  chan *fakeWorker
}

func (b *fakeBackend) Start(ctx context.Context, spec Spec) (Worker, error) {
	b.mu.Lock()
	b.attempts = append(b.attempts, time.Now())
	if b.hang {
		b.mu.Unlock()
		if spec.Started != nil {
			spec.Started(1000, func() []string { return []string{"connecting to the database"} })
		}
		<-ctx.Done()
		return nil, fmt.Errorf("start %s: %w", spec.Name, NotReady(ctx.Err()))
	}
	if b.failing != nil {
		err := b.failing
		b.mu.Unlock()
		return nil, err
	}
	b.pid++
	w := &fakeWorker{name: spec.Name, pid: b.pid, done: make(chan struct{})}
	b.mu.Unlock()
	b.started <- w
	return w, nil
}

func (b *fakeBackend) Release(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.released = append(b.released, name)
	return nil
}

func (b *fakeBackend) nAttempts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.attempts)
}

type events struct {
	mu  sync.Mutex // protects log
	log []string
	ch  chan string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
	e.ch <- s
}

func (e *events) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-e.ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no supervisor event within 5s")
		return ""
	}
}

func newTestSupervisor(t *testing.T, b *fakeBackend, n int, tweak ...func(*SupervisorConfig)) (*Supervisor, *events, context.CancelFunc) {
	t.Helper()
	ev := &events{ch: make(chan string, 100)}
	cfg := SupervisorConfig{
		Backend:    b,
		Spec:       func(name string) Spec { return Spec{App: "t", Name: name} },
		Workers:    n,
		BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
		OnReady:    func(w Worker) { ev.add(fmt.Sprintf("ready %s pid %d", w.Name(), w.Pid())) },
		OnGone:     func(w Worker) { ev.add(fmt.Sprintf("gone %s pid %d", w.Name(), w.Pid())) },
	}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := NewSupervisor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, context.Background); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, ev, cancel
}

func TestSupervisorReplacesExitedWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		s, ev, _ := newTestSupervisor(t, b, 1)
		w := <-b.started
		if e := ev.next(t); e != "ready w1 pid 1" {
			t.Fatalf("got %q", e)
		}
		w.exit()
		if e := ev.next(t); e != "gone w1 pid 1" {
			t.Fatalf("got %q", e)
		}
		<-b.started
		if e := ev.next(t); e != "ready w1 pid 2" {
			t.Fatalf("got %q", e)
		}
		synctest.Wait() // OnReady comes first; the status follows it
		if st := s.Status(); st.Ready != 1 || st.Workers[0].Restarts != 1 {
			t.Errorf("status %+v", st)
		}
	})
}

// TestSupervisorServingWorkerIsReplacedAtOnce: workers that served
// requests and crash (a request that kills its worker, again and again)
// are replaced with no wait, however often it happens.
func TestSupervisorServingWorkerIsReplacedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		newTestSupervisor(t, b, 1, func(c *SupervisorConfig) {
			c.Served = func(w Worker) uint64 { return w.(*fakeWorker).served.Load() }
		})
		for i := 0; i < 10; i++ {
			w := <-b.started
			w.served.Store(3)
			time.Sleep(100 * time.Millisecond) // it serves a little, then crashes
			w.exit()
		}
		<-b.started
		b.mu.Lock()
		defer b.mu.Unlock()
		for i := 1; i < len(b.attempts); i++ {
			if gap := b.attempts[i].Sub(b.attempts[i-1]); gap > 100*time.Millisecond {
				t.Fatalf("start %d came %s after the previous one: a worker that served was not replaced at once", i+1, gap)
			}
		}
	})
}

// TestSupervisorIdleCrashBacksOff: a worker that crashes soon after it is
// ready without serving anything is a crash loop: backoff.
func TestSupervisorIdleCrashBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		newTestSupervisor(t, b, 1, func(c *SupervisorConfig) {
			c.Served = func(w Worker) uint64 { return 0 }
		})
		for i := 0; i < 5; i++ {
			w := <-b.started
			w.exit()
		}
		<-b.started
		b.mu.Lock()
		defer b.mu.Unlock()
		var gaps []time.Duration
		for i := 1; i < len(b.attempts); i++ {
			gaps = append(gaps, b.attempts[i].Sub(b.attempts[i-1]))
		}
		if fmt.Sprint(gaps) != "[20ms 40ms 80ms 160ms 200ms]" {
			t.Fatalf("waits between starts %v, want the backoff 20ms doubling to 200ms", gaps)
		}
	})
}

func TestSupervisorCrashLoopBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10), failing: errors.New("boom")}
		var failed atomic.Int32
		s, ev, _ := newTestSupervisor(t, b, 1, func(c *SupervisorConfig) {
			c.OnStartFailed = func(name string, err error) {
				if name == "w1" && err.Error() == "boom" {
					failed.Add(1)
				}
			}
		})
		for b.nAttempts() < 5 {
			time.Sleep(10 * time.Millisecond)
		}
		synctest.Wait() // the fifth failure is told (OnStartFailed) and the slot waits
		if st := s.Status(); st.Failing != "boom" || st.Ready != 0 {
			t.Errorf("status %+v, want failing boom", st)
		}
		b.mu.Lock()
		var gaps []time.Duration
		for i := 1; i < 5; i++ {
			gaps = append(gaps, b.attempts[i].Sub(b.attempts[i-1]))
		}
		b.failing = nil
		b.mu.Unlock()
		if fmt.Sprint(gaps) != "[20ms 40ms 80ms 160ms]" {
			t.Errorf("waits between attempts %v, want 20ms doubling", gaps)
		}
		if n := failed.Load(); n < 5 {
			t.Errorf("OnStartFailed told of %d failed starts, want at least 5", n)
		}
		<-b.started
		if e := ev.next(t); !strings.HasPrefix(e, "ready w1") {
			t.Fatalf("got %q", e)
		}
		synctest.Wait() // the slot is done with its start: it serves and waits
		if st := s.Status(); st.Failing != "" {
			t.Errorf("still failing after a start: %+v", st)
		}
	})
}

// TestSupervisorExplainsSlowStart: a start that takes long is in the
// status (pid, since, what it waits for), explained to visitors without
// the app's output, and logged at 10s and every 15s with that output.
func TestSupervisorExplainsSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs testenv.LogBuffer
		log := logs.Logger(slog.LevelInfo)
		b := &fakeBackend{started: make(chan *fakeWorker, 10), hang: true}
		s, _, _ := newTestSupervisor(t, b, 1, func(c *SupervisorConfig) { c.Log = log })
		time.Sleep(12 * time.Second)
		synctest.Wait()
		st := s.StatusWithUsage(context.Background())
		if len(st.Starting) != 1 || st.Starting[0].Pid != 1000 || st.Starting[0].Waiting != "has not called listen() yet" {
			t.Fatalf("starting workers %+v", st.Starting)
		}
		public, detail := st.Unavailable(time.Now())
		if want := "worker w1 has run for 12s and has not called listen() yet; spawn timeout 1m0s"; public != want {
			t.Errorf("public text %q, want %q", public, want)
		}
		if strings.Contains(public, "database") || !strings.Contains(detail, "connecting to the database") {
			t.Errorf("public %q must not, detail %q must quote the app's output", public, detail)
		}
		time.Sleep(14 * time.Second) // 26s: the warnings of 10s and 25s
		synctest.Wait()
		out := logs.String()
		if n := strings.Count(out, `msg="worker not ready yet"`); n != 2 {
			t.Errorf("%d warnings in 26s of start, want 2 (at 10s and 25s):\n%s", n, out)
		}
		if !strings.Contains(out, `output="connecting to the database"`) || !strings.Contains(out, "for=10s") {
			t.Errorf("warning does not quote the output or the time:\n%s", out)
		}
	})
}

func TestSupervisorRollingRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		s, ev, _ := newTestSupervisor(t, b, 2)
		old := map[int]*fakeWorker{}
		for i := 0; i < 2; i++ {
			w := <-b.started
			old[w.pid] = w
			ev.next(t)
		}
		if err := s.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		// For each slot: the new worker is ready before the old one goes.
		ev.mu.Lock()
		log := append([]string(nil), ev.log[2:]...)
		ev.mu.Unlock()
		if len(log) != 4 {
			t.Fatalf("events %q", log)
		}
		for i := 0; i < 4; i += 2 {
			if !strings.HasPrefix(log[i], "ready ") || !strings.HasPrefix(log[i+1], "gone ") {
				t.Fatalf("events %q: want ready then gone, per slot", log)
			}
		}
		synctest.Wait()
		for pid, w := range old {
			if !isClosed(w.done) {
				t.Errorf("old worker %d was not stopped", pid)
			}
		}
	})
}

func TestSupervisorRestartFailureKeepsOldWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		s, ev, _ := newTestSupervisor(t, b, 1)
		w := <-b.started
		ev.next(t)
		b.mu.Lock()
		b.failing = errors.New("syntax error in the new release")
		b.mu.Unlock()
		err := s.Restart(context.Background())
		if err == nil || !strings.Contains(err.Error(), "syntax error") {
			t.Fatalf("restart: %v", err)
		}
		if isClosed(w.done) {
			t.Fatal("the old worker was stopped although its replacement failed")
		}
		if st := s.Status(); st.Ready != 1 {
			t.Errorf("status %+v", st)
		}
	})
}

func TestBackoff(t *testing.T) {
	got := []time.Duration{}
	for n := 1; n <= 8; n++ {
		got = append(got, backoff(500*time.Millisecond, 30*time.Second, n))
	}
	want := "[500ms 1s 2s 4s 8s 16s 30s 30s]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestSupervisorScale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		s, ev, _ := newTestSupervisor(t, b, 1)
		<-b.started
		ev.next(t)
		if err := s.Scale(context.Background(), 3); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			<-b.started
			ev.next(t)
		}
		synctest.Wait() // both new slots are done starting
		if st := s.Status(); st.Wanted != 3 || st.Ready != 3 {
			t.Fatalf("after scaling to 3: %+v", st)
		}
		if err := s.Scale(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		gone := map[string]bool{}
		for i := 0; i < 2; i++ {
			gone[strings.Join(strings.Fields(ev.next(t))[:2], " ")] = true
		}
		if !gone["gone w3"] || !gone["gone w2"] {
			t.Fatalf("scaling down took out %v, want the newest two", gone)
		}
		synctest.Wait()
		b.mu.Lock()
		released := strings.Join(b.released, " ")
		b.mu.Unlock()
		if released != "w3 w2" && released != "w2 w3" {
			t.Errorf("released names %q, want w2 and w3", released)
		}
		if st := s.Status(); st.Wanted != 1 || st.Ready != 1 || st.Workers[0].Name != "w1" {
			t.Fatalf("after scaling to 1: %+v", st)
		}
		if err := s.Scale(context.Background(), 2); err != nil {
			t.Fatal(err)
		}
		<-b.started
		if e := ev.next(t); e != "ready w4 pid 4" {
			t.Fatalf("a new slot reused a name: %q", e)
		}
	})
}

// TestSupervisorRecycles: a worker past its request or memory limit is
// replaced, the new one ready before the old one goes, and the reason is
// kept and counted.
func TestSupervisorRecycles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*SupervisorConfig)
		exceed func(*fakeWorker)
		reason string
	}{
		{"max-requests", func(c *SupervisorConfig) { c.MaxRequests = 100 }, func(w *fakeWorker) { w.served.Store(100) }, "max requests: served 100"},
		{"memory", func(c *SupervisorConfig) { c.MemoryLimit = 100 << 20 }, func(w *fakeWorker) { w.memory.Store(150 << 20) }, "memory: 150 MiB over the limit of 100 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := &fakeBackend{started: make(chan *fakeWorker, 10)}
				s, ev, _ := newTestSupervisor(t, b, 1, tc.cfg, func(c *SupervisorConfig) {
					c.Served = func(w Worker) uint64 { return w.(*fakeWorker).served.Load() }
				})
				w := <-b.started
				ev.next(t)
				w.served.Store(85) // below any drawn limit (90..100)
				time.Sleep(5 * time.Second)
				synctest.Wait()
				if n := b.nAttempts(); n != 1 {
					t.Fatalf("%d starts before any limit was reached", n)
				}
				tc.exceed(w)
				nw := <-b.started
				if e := ev.next(t); e != fmt.Sprintf("ready w1 pid %d", nw.pid) {
					t.Fatalf("got %q, want the new worker ready first", e)
				}
				if e := ev.next(t); e != "gone w1 pid 1" {
					t.Fatalf("got %q", e)
				}
				synctest.Wait()
				if !isClosed(w.done) {
					t.Error("the recycled worker was not stopped")
				}
				st := s.Status()
				if st.Recycles != 1 || st.Workers[0].Recycles != 1 || !strings.HasPrefix(st.Workers[0].LastRecycle, tc.reason) {
					t.Errorf("status %+v: want 1 recycle for %q", st, tc.reason)
				}
			})
		})
	}
}

// TestSupervisorRecycleByName: Recycle replaces one worker (the new one
// ready first) and counts the reason; the other workers stay.
func TestSupervisorRecycleByName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBackend{started: make(chan *fakeWorker, 10)}
		s, ev, _ := newTestSupervisor(t, b, 2)
		w1, w2 := <-b.started, <-b.started
		ev.next(t)
		ev.next(t)
		if w1.name != "w1" {
			w1, w2 = w2, w1
		}
		if err := s.Recycle(context.Background(), "w1", "blocked past the maximum request time"); err != nil {
			t.Fatal(err)
		}
		if e := ev.next(t); e != "ready w1 pid 3" {
			t.Fatalf("got %q, want the new w1 ready first", e)
		}
		synctest.Wait()
		if !isClosed(w1.done) || isClosed(w2.done) {
			t.Errorf("after recycling w1: w1 stopped %v, w2 stopped %v", isClosed(w1.done), isClosed(w2.done))
		}
		st := s.Status()
		if st.Recycles != 1 {
			t.Errorf("%d recycles counted, want 1", st.Recycles)
		}
		if err := s.Recycle(context.Background(), "w9", "x"); err == nil {
			t.Error("recycling an unknown worker: no error")
		}
	})
}
