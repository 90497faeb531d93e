// Package loop runs connections on event loops of berth's own: one per
// processor, each waiting on its own epoll set.
//
// The goroutine engine pays the Go scheduler on every wait (a park and a
// wake per request and per answer, a processor's idle transition about
// once per two requests at hello c=16), and it concentrates the work on
// one thread, which the kernel then makes share its core with whatever
// that thread wakes (DESIGN.md, "What the rest of the machine pays").
// A loop waits with a raw epoll_pwait instead: its thread keeps its
// processor, and wakes only for its own descriptors.
//
// The code that serves a connection stays ordinary blocking code. Each
// runs as a Task, an iter.Pull coroutine that its loop resumes when a
// Conn it waits on turns ready: a Conn's syscall.RawConn tries the
// operation and, on EAGAIN, yields to the loop (a round trip costs about
// 70 ns). A Task about to wait for anything but a Conn (a channel, a
// lock held across I/O) detaches first, and is driven by a goroutine of
// its own until it attaches again: otherwise it would stall its loop.
//
// Writes are batched: a Task's send goes into its loop's io_uring, and
// the loop hands every send of a turn to the kernel in one io_uring_enter
// (one alone with send(2)) before it waits again, then resumes the
// senders with their results
// (sends.go; package uring). A system call costs over a microsecond on
// the machines berth is measured on, and a plain send also lets the reader
// it wakes preempt the loop (DESIGN.md, "The system-call floor, and
// io_uring"). Where the kernel gives no io_uring, or with
// Config.PlainSends, each send is its own system call as before.
//
// Descriptors are raw: the loop accepts and dials them itself, so the
// runtime's poller never sees them and never wakes for them.
//
// A stop-the-world reaches a loop blocked in epoll_pwait through the
// runtime's preemption signal, which ends the wait with EINTR. When
// asynchronous preemption is off (GODEBUG=asyncpreemptoff=1) no signal
// comes, so the loop then waits at most 10 ms at a time.
package loop
