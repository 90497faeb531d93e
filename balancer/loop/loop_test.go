package loop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// within fails the test when ch yields nothing before d.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing after %v", what, d)
		panic("unreachable")
	}
}

func newLoop(t *testing.T) *Loop {
	t.Helper()
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// pair returns a descriptor for the loop and the other end as a net.Conn
// for the test.
func pair(t *testing.T) (int, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "peer")
	peer, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return fds[0], peer
}

func echo(_ *Task, c *Conn, err error) {
	if err != nil {
		return
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func TestEchoManyConnections(t *testing.T) {
	l := newLoop(t)
	if err := echoClients(t, l, 50, 200); err != nil {
		t.Fatal(err)
	}
}

// echoClients adopts conns echoing connections into l and has a client
// per connection send rounds messages and read each back, all at once.
func echoClients(t *testing.T, l *Loop, conns, rounds int) error {
	t.Helper()
	errs := make(chan error, conns)
	for i := range conns {
		fd, peer := pair(t)
		l.Adopt(fd, echo)
		go func() {
			got := make([]byte, 64)
			for r := range rounds {
				msg := fmt.Appendf(nil, "conn %d round %d", i, r)
				if _, err := peer.Write(msg); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(peer, got[:len(msg)]); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got[:len(msg)], msg) {
					errs <- fmt.Errorf("conn %d: echoed %q, sent %q", i, got[:len(msg)], msg)
					return
				}
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := within(t, errs, 30*time.Second, "echo"); err != nil {
			return err
		}
	}
	return nil
}

// A large write waits for room and completes as the peer reads.
func TestWriteWaitsForRoom(t *testing.T) {
	bigWrite(t, newLoop(t), 1<<20)
}

// bigWrite has a Task of l write size bytes in one Write, which must wait
// for room as the peer reads them, and checks what arrives.
func bigWrite(t *testing.T, l *Loop, size int) {
	t.Helper()
	fd, peer := pair(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	done := make(chan error, 1)
	l.Adopt(fd, func(_ *Task, c *Conn, _ error) {
		n, err := c.Write(big)
		if err == nil && n != len(big) {
			err = fmt.Errorf("wrote %d of %d bytes without an error", n, len(big))
		}
		c.Close()
		done <- err
	})
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := within(t, done, 20*time.Second, "large write"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(big))
	}
}

func TestReadDeadline(t *testing.T) {
	l := newLoop(t)
	fd, _ := pair(t)
	done := make(chan error, 1)
	l.Adopt(fd, func(_ *Task, c *Conn, _ error) {
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		_, err := c.Read(make([]byte, 10))
		done <- err
	})
	err := within(t, done, 5*time.Second, "read past its deadline")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
}

// adoptReader runs a Task on l that reads fd once; it returns the Conn
// once the Task has started, and where the read's error will come.
func adoptReader(t *testing.T, l *Loop, fd int) (*Conn, <-chan error) {
	t.Helper()
	conn := make(chan *Conn, 1)
	done := make(chan error, 1)
	l.Adopt(fd, func(_ *Task, c *Conn, _ error) {
		conn <- c
		_, err := c.Read(make([]byte, 10))
		done <- err
	})
	return within(t, conn, 5*time.Second, "task start"), done
}

// A deadline set from another goroutine ends a wait that has none: how
// the front door breaks a connection's wait when it drains.
func TestDeadlineSetFromElsewhere(t *testing.T) {
	fd, _ := pair(t)
	c, done := adoptReader(t, newLoop(t), fd)
	select {
	case err := <-done:
		t.Fatalf("read returned before any deadline: %v", err)
	default:
	}
	c.SetReadDeadline(time.Unix(1, 0))
	if err := within(t, done, 5*time.Second, "read after the deadline moved"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a timeout", err)
	}
}

func TestCloseFromElsewhere(t *testing.T) {
	fd, peer := pair(t)
	c, done := adoptReader(t, newLoop(t), fd)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := within(t, done, 5*time.Second, "read after Close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if n, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %d, %v; want EOF", n, err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}

// A detached Task blocks on a channel without stalling its loop: another
// Task on the same loop keeps answering, and the detached one reads its
// socket (poll(2)), attaches again and reads on the loop.
func TestDetachDoesNotStallTheLoop(t *testing.T) {
	l := newLoop(t)
	fd1, peer1 := pair(t)
	fd2, peer2 := pair(t)
	gate := make(chan struct{})
	detached := make(chan struct{})
	got := make(chan string, 3)
	l.Adopt(fd1, func(task *Task, c *Conn, _ error) {
		task.Detach()
		close(detached)
		<-gate
		buf := make([]byte, 16)
		n, err := c.Read(buf) // detached: poll(2)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
		task.Attach()
		n, err = c.Read(buf) // on the loop again
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	})
	l.Adopt(fd2, echo)
	within(t, detached, 5*time.Second, "detach")

	// The loop serves the other Task while the first waits on the gate.
	peer2.Write([]byte("ping"))
	buf := make([]byte, 4)
	peer2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer2, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo beside a detached Task: %q, %v", buf, err)
	}

	close(gate)
	peer1.Write([]byte("one"))
	if s := within(t, got, 5*time.Second, "detached read"); s != "one" {
		t.Fatalf("detached read: %q", s)
	}
	peer1.Write([]byte("two"))
	if s := within(t, got, 5*time.Second, "attached read"); s != "two" {
		t.Fatalf("read after Attach: %q", s)
	}
}

func TestDial(t *testing.T) {
	l := newLoop(t)
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	done := make(chan string, 1)
	l.Go(func(task *Task) {
		c, err := task.Dial("unix", path)
		if err != nil {
			done <- err.Error()
			return
		}
		defer c.Close()
		c.Write([]byte("hello"))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			done <- err.Error()
			return
		}
		done <- string(buf)
	})
	if s := within(t, done, 5*time.Second, "dial"); s != "hello" {
		t.Fatalf("dial and echo: %q", s)
	}

	l.Go(func(task *Task) {
		_, err := task.Dial("unix", filepath.Join(t.TempDir(), "none"))
		done <- fmt.Sprint(err)
	})
	if s := within(t, done, 5*time.Second, "dial nowhere"); !bytes.Contains([]byte(s), []byte("no such file")) {
		t.Fatalf("dial to a missing socket: %s", s)
	}
}

// Loops blocked in their raw waits hold their processors; a
// stop-the-world still completes.
func TestCollectionWhileLoopsWait(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	newLoop(t)
	newLoop(t)
	for i := range 20 {
		done := make(chan struct{})
		go func() {
			runtime.GC()
			close(done)
		}()
		within(t, done, 5*time.Second, fmt.Sprintf("collection %d", i))
	}
}

func TestCloseEndsWaitingTasks(t *testing.T) {
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	fd, _ := pair(t)
	started := make(chan struct{})
	done := make(chan error, 1)
	l.Adopt(fd, func(_ *Task, c *Conn, _ error) {
		close(started)
		_, err := c.Read(make([]byte, 1))
		done <- err
	})
	within(t, started, 5*time.Second, "task start")
	l.Close()
	if err := within(t, done, 5*time.Second, "read as the loop closes"); err == nil {
		t.Fatal("read returned no error as the loop closed")
	}
	if n := l.Load(); n != 0 {
		t.Fatalf("%d Tasks alive after Close", n)
	}
}

func TestAsyncPreemptOff(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		off     bool
	}{
		{"", false},
		{"asyncpreemptoff=1", true},
		{"gctrace=1, asyncpreemptoff=1", true},
		{"asyncpreemptoff=1,asyncpreemptoff=0", false},
		{"asyncpreemptoff=0", false},
	} {
		if got := asyncPreemptOff(tc.godebug); got != tc.off {
			t.Errorf("asyncPreemptOff(%q) = %v, want %v", tc.godebug, got, tc.off)
		}
	}
}

// A Listener accepts from a TCP listener's socket for Adopt, and its
// Close ends a waiting Accept even though the net.Listener is still open.
func TestListenerAcceptsAndCloses(t *testing.T) {
	l := newLoop(t)
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	ll, err := Listen(nl)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		for {
			fd, remote, err := ll.Accept()
			if err != nil {
				accepted <- err
				return
			}
			if ra, ok := remote.(*net.TCPAddr); !ok || !ra.IP.IsLoopback() {
				t.Errorf("peer address %v, want a loopback TCPAddr", remote)
			}
			if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); v == 0 {
				t.Error("accepted TCP connection without TCP_NODELAY")
			}
			l.Adopt(fd, echo)
		}
	}()
	c, err := net.Dial("tcp", nl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through an accepted connection: %q, %v", got, err)
	}
	ll.Close()
	if err := within(t, accepted, 5*time.Second, "Accept after Close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// Every loop holds a processor while it waits: New keeps one more for the
// rest of the program, however many loops there are.
func TestLoopsLeaveAProcessor(t *testing.T) {
	n := runtime.GOMAXPROCS(0) + 1
	for range n {
		newLoop(t)
	}
	if got := runtime.GOMAXPROCS(0); got <= n {
		t.Fatalf("GOMAXPROCS %d with %d loops running: nothing left for other goroutines", got, n)
	}
}

// An idle loop stops holding its processor: after idleAfter with nothing
// to do it waits through the runtime, and a Post still wakes it at once.
func TestIdleLoopWaitsThroughTheRuntime(t *testing.T) {
	l := newLoop(t)
	deadline := time.Now().Add(5 * time.Second)
	for l.idleWaits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no wait through the runtime after 5 s idle (idleAfter is %v)", idleAfter)
		}
		runtime.Gosched()
	}
	ran := make(chan struct{})
	l.Post(func() { close(ran) })
	within(t, ran, 5*time.Second, "a Post to an idle loop")
}
