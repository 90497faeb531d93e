package loop

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"berth/balancer/loop/uring"
)

// ErrClosed is what waits on a Conn return once its Loop is closed.
var ErrClosed = errors.New("loop: closed")

// Config configures a Loop. Its zero value is the default.
type Config struct {
	// MaxWait bounds one epoll wait. Zero means no bound, unless the
	// runtime's asynchronous preemption is off (GODEBUG contains
	// asyncpreemptoff=1): then 10ms, so that a stop-the-world never waits
	// longer for the loop.
	MaxWait time.Duration

	// PlainSends makes every send its own system call. By default a loop
	// batches the sends of a turn through an io_uring (see sends.go), and
	// falls back to plain sends where the kernel refuses one.
	PlainSends bool
}

// Loop is one event loop: an epoll set, the Conns registered in it and the
// Tasks that wait on them. New starts it on a goroutine of its own; Close
// stops it.
type Loop struct {
	ep   int
	wake int // eventfd that Post writes to wake the loop

	// The loop goroutine's own, also used by attached Tasks, which run on
	// it.
	evs     []unix.EpollEvent
	conns   []*Conn  // by slot
	free    []uint32 // slots to reuse
	timers  timerHeap
	tasks   map[*Task]struct{}
	maxWait int // milliseconds, -1 for no bound

	ring    *uring.Ring // batches the turn's sends; nil for plain sends
	ringErr error       // why New has no ring, when it tried
	sending []*Task     // the Tasks whose send is queued in ring, by its user data
	sent    []*Task     // sending's spare, for the next batch

	idleSince int64        // Unix nanoseconds since the loop found nothing to do, 0 while busy
	idleWaits atomic.Int64 // waits made through the runtime, for tests
	batched   atomic.Int64 // sends made through the ring, for tests
	alone     atomic.Int64 // sends queued alone in their turn, made with send(2), for tests

	mu     sync.Mutex // protects posted and stopping
	posted []func()
	stop   bool
	woken  atomic.Bool // a wake-up is pending: Post need not write again
	done   chan struct{}
	load   atomic.Int64 // Tasks alive
}

// wakeSlot marks the eventfd's epoll entry.
const wakeSlot = -1

// New creates a Loop and starts it.
func New(cfg Config) (*Loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("loop: epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("loop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("loop: add eventfd: %w", err)
	}
	l := &Loop{
		ep:      ep,
		wake:    wake,
		evs:     make([]unix.EpollEvent, 256),
		tasks:   make(map[*Task]struct{}),
		maxWait: -1,
		done:    make(chan struct{}),
	}
	switch {
	case cfg.MaxWait > 0:
		l.maxWait = int((cfg.MaxWait + time.Millisecond - 1) / time.Millisecond)
	case asyncPreemptOff(os.Getenv("GODEBUG")):
		l.maxWait = 10
	}
	if !cfg.PlainSends {
		if r, err := uring.New(ringEntries); err == nil {
			l.ring = r
		} else {
			l.ringErr = err
		}
	}
	reserveProc()
	go l.run()
	return l, nil
}

// running counts the Loops alive in the process.
var (
	procMu  sync.Mutex
	running int
)

// reserveProc keeps a processor for the rest of the program beside every
// loop: a loop holds its own even while it waits, so with as many loops
// as processors every other goroutine (a detached Task, the runtime's
// poller, the collector) would wait for the 10 ms preemption that ends a
// loop's wait. It raises GOMAXPROCS to one more than the loops alive,
// when it is lower; it never lowers it.
func reserveProc() {
	procMu.Lock()
	defer procMu.Unlock()
	running++
	if runtime.GOMAXPROCS(0) < running+1 {
		runtime.GOMAXPROCS(running + 1)
	}
}

func releaseProc() {
	procMu.Lock()
	running--
	procMu.Unlock()
}

// asyncPreemptOff reports whether a GODEBUG value turns asynchronous
// preemption off (the last setting wins, as in the runtime).
func asyncPreemptOff(godebug string) bool {
	off := false
	for _, kv := range strings.Split(godebug, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(kv), "asyncpreemptoff="); ok {
			off = v == "1"
		}
	}
	return off
}

// Load reports how many Tasks are alive on the loop or on their way to
// it: for choosing the least-loaded loop for a new connection.
func (l *Loop) Load() int64 { return l.load.Load() }

// Post runs f on the loop goroutine soon. It may be called from any
// goroutine; f must not block.
func (l *Loop) Post(f func()) {
	l.mu.Lock()
	l.posted = append(l.posted, f)
	l.mu.Unlock()
	if !l.woken.Swap(true) {
		var one = [8]byte{1}
		unix.Write(l.wake, one[:])
	}
}

// Go starts fn as a Task on the loop. It may be called from any
// goroutine.
func (l *Loop) Go(fn func(t *Task)) {
	l.load.Add(1)
	l.Post(func() { l.start(fn) })
}

// Close stops the loop: Tasks still waiting on a Conn see ErrClosed, and
// Close returns once the loop goroutine has ended. Conns still open are
// closed.
func (l *Loop) Close() error {
	l.mu.Lock()
	if l.stop {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.stop = true
	l.mu.Unlock()
	l.Post(func() {})
	<-l.done
	return nil
}

func (l *Loop) run() {
	defer close(l.done)
	defer releaseProc()
	for {
		n, errno := l.wait()
		if errno != 0 && errno != unix.EINTR {
			panic(fmt.Sprintf("loop: epoll_pwait: %v", errno))
		}
		for i := range n {
			ev := &l.evs[i]
			if ev.Fd == wakeSlot {
				var b [8]byte
				unix.Read(l.wake, b[:])
				continue
			}
			if int(ev.Fd) >= len(l.conns) {
				continue
			}
			if c := l.conns[ev.Fd]; c != nil && c.gen == uint32(ev.Pad) {
				l.notify(c, ev.Events)
			}
		}
		if l.runPosted() {
			l.shutdown()
			return
		}
		l.fireTimers()
		l.flushSends()
	}
}

// idleAfter is how long a loop with nothing to do keeps its processor.
// Beyond it, the loop waits through the runtime, which gives the
// processor to others meanwhile: held, the runtime's monitor would take
// the loop for a goroutine that never yields and preempt it every 10 ms,
// a hundred wake-ups a second for an idle server.
const idleAfter = 20 * time.Millisecond

// wait waits for events: holding the processor while the loop is busy
// or only just idle, through the runtime once it has been idle for
// idleAfter.
func (l *Loop) wait() (int, syscall.Errno) {
	to := l.timeout()
	if to == 0 {
		l.idleSince = 0
		return epollWait(l.ep, l.evs, 0)
	}
	now := time.Now()
	if l.idleSince == 0 {
		l.idleSince = now.UnixNano()
	}
	left := idleAfter - time.Duration(now.UnixNano()-l.idleSince)
	if left > 0 {
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		if to > 0 {
			ms = min(ms, to)
		}
		n, errno := epollWait(l.ep, l.evs, ms)
		if n > 0 {
			l.idleSince = 0
		}
		return n, errno
	}
	l.idleWaits.Add(1)
	n, err := unix.EpollWait(l.ep, l.evs, to)
	if n > 0 {
		l.idleSince = 0
	}
	if err != nil {
		return 0, err.(syscall.Errno)
	}
	return n, 0
}

// epollWait waits for events without the runtime's system-call
// bookkeeping: the thread keeps its processor. It is not inlined, so that
// after an EINTR its caller passes a preemption check before waiting
// again.
//
//go:noinline
func epollWait(ep int, evs []unix.EpollEvent, msec int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(msec), 0, 0)
	return int(r), e
}

// timeout is how long the next wait may last, in milliseconds.
func (l *Loop) timeout() int {
	if l.woken.Load() {
		return 0
	}
	ms := l.maxWait
	if len(l.timers) > 0 {
		d := l.timers[0].when - time.Now().UnixNano()
		t := 0
		if d > 0 {
			t = int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
		}
		if ms < 0 || t < ms {
			ms = t
		}
	}
	return ms
}

// runPosted runs what Post queued; it reports whether the loop is to
// stop.
func (l *Loop) runPosted() bool {
	l.mu.Lock()
	fs, stop := l.posted, l.stop
	l.posted = nil
	l.woken.Store(false)
	l.mu.Unlock()
	for _, f := range fs {
		f()
	}
	return stop
}

// shutdown ends the loop: every Task still attached sees ErrClosed
// (its yield returns false), and what is left is closed.
func (l *Loop) shutdown() {
	if l.ring != nil {
		l.ring.Discard()
		l.sending = l.sending[:0] // stopped below: their sends return ErrClosed
	}
	for t := range l.tasks {
		if !t.detached.Load() {
			t.stop()
			l.finish(t)
		}
	}
	for _, c := range l.conns {
		if c != nil {
			c.Close()
		}
	}
	unix.Close(l.ep)
	unix.Close(l.wake)
	if l.ring != nil {
		l.ring.Close()
	}
}

// notify records what epoll reported for c and resumes the Task waiting
// on it.
func (l *Loop) notify(c *Conn, events uint32) {
	var bits uint32
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bits |= 1 << dirRead
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bits |= 1 << dirWrite
	}
	c.ready.Or(bits)
	for d, t := range c.task {
		if t != nil && t.on == c && t.dir == d && bits&(1<<d) != 0 && !t.detached.Load() {
			l.resume(t)
		}
	}
}

// register adds fd to the epoll set as a Conn. On the loop goroutine
// only (an attached Task, or a posted function).
func (l *Loop) register(fd int) (*Conn, error) {
	var slot uint32
	if k := len(l.free); k > 0 {
		slot, l.free = l.free[k-1], l.free[:k-1]
	} else {
		slot = uint32(len(l.conns))
		l.conns = append(l.conns, nil)
	}
	c := &Conn{l: l, fd: fd, slot: slot, tix: [2]int{-1, -1}}
	c.refs.Store(1) // Close's
	c.gen = nextGen.Add(1)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(slot), Pad: int32(c.gen)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.free = append(l.free, slot)
		return nil, fmt.Errorf("loop: add descriptor %d: %w", fd, err)
	}
	l.conns[slot] = c
	c.addrs()
	return c, nil
}

// nextGen tells a slot's Conns apart, so that an event for a closed one
// never reaches its successor.
var nextGen atomic.Uint32

// release forgets c: its slot and timers. On the loop goroutine only.
func (l *Loop) release(c *Conn) {
	for d := range c.tix {
		if c.tix[d] >= 0 {
			heap.Remove(&l.timers, c.tix[d])
		}
	}
	if int(c.slot) < len(l.conns) && l.conns[c.slot] == c {
		l.conns[c.slot] = nil
		l.free = append(l.free, c.slot)
	}
}

// setTimer makes the loop resume c's waiter in direction d at when.
func (l *Loop) setTimer(c *Conn, d int, when int64) {
	if i := c.tix[d]; i >= 0 {
		if l.timers[i].when != when {
			l.timers[i].when = when
			heap.Fix(&l.timers, i)
		}
		return
	}
	heap.Push(&l.timers, &timer{c: c, d: d, when: when})
}

// fireTimers resumes the Tasks whose deadlines have passed; their waits
// see it and return a timeout.
func (l *Loop) fireTimers() {
	if len(l.timers) == 0 {
		return
	}
	now := time.Now().UnixNano()
	for len(l.timers) > 0 && l.timers[0].when <= now {
		tm := heap.Pop(&l.timers).(*timer)
		c := tm.c
		if t := c.task[tm.d]; t != nil && t.on == c && t.dir == tm.d && !t.detached.Load() {
			l.resume(t)
		}
	}
}

// A timer is a Conn's deadline in one direction, in the loop's heap.
type timer struct {
	c    *Conn
	d    int
	when int64 // Unix nanoseconds
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].c.tix[h[i].d] = i
	h[j].c.tix[h[j].d] = j
}
func (h *timerHeap) Push(x any) {
	tm := x.(*timer)
	tm.c.tix[tm.d] = len(*h)
	*h = append(*h, tm)
}
func (h *timerHeap) Pop() any {
	old := *h
	tm := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	tm.c.tix[tm.d] = -1
	return tm
}
