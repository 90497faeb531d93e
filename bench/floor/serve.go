package main

// serve.go: the servers of the three modes. Each takes a listening socket,
// runs on one locked OS thread, answers each complete request head
// ("\r\n\r\n") with response, and treats a connection the same way
// otherwise.

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"berth/balancer/loop/uring"
)

// response is what berth sends for a cache hit of the bench's /cached.
var response = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n" +
	"Cache-Control: public, max-age=60\r\nAge: 1\r\nCache-Status: berth; hit\r\n\r\nhello world\n")

var headEnd = []byte("\r\n\r\n")

// lateSends counts the hybrid's turns whose sends had not all completed
// when io_uring_enter returned (none expected: QueueSend's MSG_DONTWAIT).
var lateSends atomic.Int64

// client is one connection and what it has read of its next request.
type client struct {
	fd  int
	buf [4096]byte
	n   int
}

// heads counts the complete request heads in c.buf and drops them.
func (c *client) heads() int {
	k := 0
	for {
		i := bytes.Index(c.buf[:c.n], headEnd)
		if i < 0 {
			return k
		}
		c.n = copy(c.buf[:], c.buf[i+len(headEnd):c.n])
		k++
	}
}

func serveMode(mode string, l *os.File) error {
	runtime.LockOSThread()
	defer runtime.KeepAlive(l) // its finalizer would close the socket
	lfd := int(l.Fd())
	if err := unix.SetNonblock(lfd, true); err != nil {
		return err
	}
	switch mode {
	case "epoll":
		return serveEpoll(lfd, nil)
	case "uring":
		return serveUring(lfd)
	case "hybrid":
		r, err := uring.New(1024)
		if err != nil {
			return err
		}
		defer r.Close()
		return serveEpoll(lfd, r)
	}
	return fmt.Errorf("unknown mode %q (epoll, hybrid or uring)", mode)
}

// acceptAll accepts every pending connection.
func acceptAll(lfd int, add func(*client) error) error {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == unix.EAGAIN {
			return nil
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return err
		}
		if err := add(&client{fd: fd}); err != nil {
			return err
		}
	}
}

// serveEpoll: edge-triggered epoll; a read shorter than the room left
// means the socket is drained (nginx's assumption), else read again. With
// a ring (the hybrid), the writes of a turn are queued there and handed to
// the kernel in one io_uring_enter at its end.
func serveEpoll(lfd int, r *uring.Ring) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	clients := map[int]*client{}
	add := func(c *client) error {
		clients[c.fd] = c
		return unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(c.fd)})
	}
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == lfd {
				if err := acceptAll(lfd, add); err != nil {
					return err
				}
				continue
			}
			c := clients[int(ev.Fd)]
			for {
				room := len(c.buf) - c.n
				m, err := unix.Read(c.fd, c.buf[c.n:])
				if m <= 0 {
					if err != unix.EAGAIN {
						unix.Close(c.fd)
						delete(clients, c.fd)
					}
					break
				}
				c.n += m
				for k := c.heads(); k > 0; k-- {
					if r == nil {
						if _, err := unix.Write(c.fd, response); err != nil {
							break // the next read sees the connection end
						}
						continue
					}
					// MSG_DONTWAIT (QueueSend's): a full socket fails the
					// send with EAGAIN at once instead of arming a poll in
					// the ring, so every send of a turn has its result when
					// io_uring_enter returns.
					for !r.QueueSend(c.fd, response, 0) {
						if err := r.Submit(0); err != nil {
							return err
						}
						r.Reap(func(uring.CQE) {})
					}
				}
				if m < room {
					break
				}
			}
		}
		if r == nil {
			continue
		}
		if submitted := r.Queued(); submitted > 0 {
			if err := r.Submit(0); err != nil {
				return err
			}
			// The sends' results: a failed one shows as the connection's
			// end on its next read.
			if r.Ready() != submitted {
				lateSends.Add(1)
			}
			r.Reap(func(uring.CQE) {})
		}
	}
}

// Opcodes of the ring entries the uring mode fills itself, and how its
// user data tells them apart: the descriptor, shifted, and a bit for a
// send.
const (
	opSend           = 26
	opRecv           = 27
	userDataSendFlag = 1
	userDataFdShift  = 1
)

// next returns a submission entry of r, submitting what is queued first
// when the queue is full.
func next(r *uring.Ring) (*uring.SQE, error) {
	if s := r.Next(); s != nil {
		return s, nil
	}
	if err := r.Submit(0); err != nil {
		return nil, err
	}
	return r.Next(), nil
}

// serveUring: every turn submits the queued recvs and sends and waits for
// at least one completion. Accepting stays a plain accept4 per turn: the
// load opens its connections once.
func serveUring(lfd int) error {
	r, err := uring.New(1024)
	if err != nil {
		return err
	}
	defer r.Close()
	clients := map[int]*client{}
	recv := func(c *client) error {
		s, err := next(r)
		if err != nil {
			return err
		}
		s.Opcode, s.Fd = opRecv, int32(c.fd)
		s.Addr, s.Len = uint64(uintptr(unsafe.Pointer(&c.buf[c.n]))), uint32(len(c.buf)-c.n)
		s.UserData = uint64(c.fd) << userDataFdShift
		return nil
	}
	send := func(c *client) error {
		s, err := next(r)
		if err != nil {
			return err
		}
		s.Opcode, s.Fd = opSend, int32(c.fd)
		s.Addr, s.Len = uint64(uintptr(unsafe.Pointer(&response[0]))), uint32(len(response))
		s.UserData = uint64(c.fd)<<userDataFdShift | userDataSendFlag
		return nil
	}
	add := func(c *client) error {
		clients[c.fd] = c
		return recv(c)
	}
	var done []uring.CQE
	for {
		if err := acceptAll(lfd, add); err != nil {
			return err
		}
		if len(clients) == 0 {
			// Nothing to wait on in the ring yet: wait for a connection.
			fds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				return err
			}
			continue
		}
		if err := r.Submit(1); err != nil {
			return err
		}
		done = done[:0]
		r.Reap(func(e uring.CQE) { done = append(done, e) })
		for _, e := range done {
			c := clients[int(e.UserData>>userDataFdShift)]
			if c == nil || e.UserData&userDataSendFlag != 0 {
				continue // a send's result: the next recv sees a broken connection
			}
			if e.Res <= 0 {
				if e.Res == -int32(unix.EAGAIN) || e.Res == -int32(unix.EINTR) {
					if err := recv(c); err != nil {
						return err
					}
					continue
				}
				unix.Close(c.fd)
				delete(clients, c.fd)
				continue
			}
			c.n += int(e.Res)
			for k := c.heads(); k > 0; k-- {
				if err := send(c); err != nil {
					return err
				}
			}
			if err := recv(c); err != nil {
				return err
			}
		}
	}
}
