package spawner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeWorker is a Worker the test ends by hand.
type fakeWorker struct {
	name string
	pid  int
	done chan struct{}
	once sync.Once
}

func (w *fakeWorker) Name() string                    { return w.name }
func (w *fakeWorker) Addr() (network, address string) { return "unix", "/nowhere" }
func (w *fakeWorker) Pid() int                        { return w.pid }
func (w *fakeWorker) Done() <-chan struct{}           { return w.done }
func (w *fakeWorker) Err() error                      { return errors.New("exit status 1") }
func (w *fakeWorker) Stop(context.Context) error      { w.exit(); return nil }
func (w *fakeWorker) exit()                           { w.once.Do(func() { close(w.done) }) }

// fakeBackend starts fakeWorkers, or fails while failing is set.
type fakeBackend struct {
	mu       sync.Mutex // protects all below
	pid      int
	failing  error
	attempts []time.Time
	started  chan *fakeWorker
}

func (b *fakeBackend) Start(ctx context.Context, spec Spec) (Worker, error) {
	b.mu.Lock()
	b.attempts = append(b.attempts, time.Now())
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

func newTestSupervisor(t *testing.T, b *fakeBackend, n int) (*Supervisor, *events, context.CancelFunc) {
	t.Helper()
	ev := &events{ch: make(chan string, 100)}
	s, err := NewSupervisor(SupervisorConfig{
		Backend:    b,
		Spec:       func(name string) Spec { return Spec{App: "t", Name: name} },
		Workers:    n,
		BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
		OnReady:    func(w Worker) { ev.add(fmt.Sprintf("ready %s pid %d", w.Name(), w.Pid())) },
		OnGone:     func(w Worker) { ev.add(fmt.Sprintf("gone %s pid %d", w.Name(), w.Pid())) },
	})
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
	if st := s.Status(); st.Ready != 1 || st.Workers[0].Restarts != 1 {
		t.Errorf("status %+v", st)
	}
}

func TestSupervisorCrashLoopBacksOff(t *testing.T) {
	b := &fakeBackend{started: make(chan *fakeWorker, 10), failing: errors.New("boom")}
	s, ev, _ := newTestSupervisor(t, b, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.attempts)
		b.mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d attempts in 5s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Status(); st.Failing != "boom" || st.Ready != 0 {
		t.Errorf("status %+v, want failing boom", st)
	}
	b.mu.Lock()
	gaps := []time.Duration{}
	for i := 1; i < 5; i++ {
		gaps = append(gaps, b.attempts[i].Sub(b.attempts[i-1]))
	}
	b.failing = nil
	b.mu.Unlock()
	for i := 1; i < len(gaps); i++ {
		if gaps[i] < gaps[i-1] && gaps[i] < 200*time.Millisecond {
			t.Errorf("waits between attempts do not grow: %v", gaps)
		}
	}
	<-b.started
	if e := ev.next(t); !strings.HasPrefix(e, "ready w1") {
		t.Fatalf("got %q", e)
	}
	if st := s.Status(); st.Failing != "" {
		t.Errorf("still failing after a start: %+v", st)
	}
}

func TestSupervisorRollingRestart(t *testing.T) {
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
	for pid, w := range old {
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Errorf("old worker %d was not stopped", pid)
		}
	}
}

func TestSupervisorRestartFailureKeepsOldWorker(t *testing.T) {
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
	select {
	case <-w.done:
		t.Fatal("the old worker was stopped although its replacement failed")
	default:
	}
	if st := s.Status(); st.Ready != 1 {
		t.Errorf("status %+v", st)
	}
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
}
