package main

// serve.go: the two servers. Both take the listening socket as fd 3, run on
// one locked OS thread, answer each complete request head ("\r\n\r\n") with
// response, and treat a connection the same way otherwise.

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// response is what berth sends for a cache hit of the bench's /cached.
var response = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n" +
	"Cache-Control: public, max-age=60\r\nAge: 1\r\nCache-Status: berth; hit\r\n\r\nhello world\n")

var headEnd = []byte("\r\n\r\n")

// lateSends counts the hybrid's turns whose sends had not all completed
// when io_uring_enter returned (none expected: see MSG_DONTWAIT below).
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
		return serveEpoll(lfd)
	case "uring":
		return serveUring(lfd)
	case "hybrid":
		return serveHybrid(lfd)
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
// means the socket is drained (nginx's assumption), else read again.
func serveEpoll(lfd int) error {
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
					if _, err := unix.Write(c.fd, response); err != nil {
						break // the next read sees the connection end
					}
				}
				if m < room {
					break
				}
			}
		}
	}
}

// The kernel's io_uring ABI (include/uapi/linux/io_uring.h), the part used.
const (
	sysIOUringSetup  = 425
	sysIOUringEnter  = 426
	opSend           = 26
	opRecv           = 27
	enterGetEvents   = 1
	offSQEs          = 0x10000000
	featSingleMmap   = 1
	userDataSendFlag = 1
	userDataFdShift  = 1
)

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

type submission struct { // struct io_uring_sqe, 64 bytes
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, opFlags  uint32
	userData      uint64
	bufIndex      uint16
	personality   uint16
	spliceFdIn    int32
	addr3, pad    uint64
}

type completion struct { // struct io_uring_cqe, 16 bytes
	userData uint64
	res      int32
	flags    uint32
}

// ring is one io_uring: the submission queue, its entries and the
// completion queue, mapped from the kernel. Only its thread touches it.
type ring struct {
	fd             int
	sqHead, sqTail *uint32 // the kernel moves head, we move tail
	sqMask         uint32
	sqArray        []uint32
	sqes           []submission
	cqHead, cqTail *uint32 // we move head, the kernel moves tail
	cqMask         uint32
	cqes           []completion
	queued         uint32 // entries filled since the last enter
}

func newRing(entries uint32) (*ring, error) {
	var p uringParams
	fd, _, errno := unix.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	if p.features&featSingleMmap == 0 {
		return nil, fmt.Errorf("io_uring: this kernel maps the two rings apart (no IORING_FEAT_SINGLE_MMAP)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(completion{})))
	rb, err := unix.Mmap(int(fd), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("io_uring rings: %w", err)
	}
	sb, err := unix.Mmap(int(fd), offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(submission{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("io_uring entries: %w", err)
	}
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rb[off])) }
	return &ring{
		fd:     int(fd),
		sqHead: at(p.sqOff.head), sqTail: at(p.sqOff.tail), sqMask: *at(p.sqOff.ringMask),
		sqArray: unsafe.Slice(at(p.sqOff.array), p.sqEntries),
		sqes:    unsafe.Slice((*submission)(unsafe.Pointer(&sb[0])), p.sqEntries),
		cqHead:  at(p.cqOff.head), cqTail: at(p.cqOff.tail), cqMask: *at(p.cqOff.ringMask),
		cqes: unsafe.Slice((*completion)(unsafe.Pointer(&rb[p.cqOff.cqes])), p.cqEntries),
	}, nil
}

// next returns a cleared submission entry, submitting what is queued
// first when the queue is full.
func (r *ring) next() (*submission, error) {
	tail := atomic.LoadUint32(r.sqTail) + r.queued
	if tail-atomic.LoadUint32(r.sqHead) >= uint32(len(r.sqes)) {
		if err := r.enter(0); err != nil {
			return nil, err
		}
		tail = atomic.LoadUint32(r.sqTail)
	}
	i := tail & r.sqMask
	r.sqArray[i] = i
	r.queued++
	s := &r.sqes[i]
	*s = submission{}
	return s, nil
}

// enter submits what is queued and, with wait > 0, waits for that many
// completions.
func (r *ring) enter(wait uint32) error {
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+r.queued) // release: the entries are written
	submit := r.queued
	r.queued = 0
	var flags uintptr
	if wait > 0 {
		flags = enterGetEvents
	}
	for {
		_, _, errno := unix.Syscall6(sysIOUringEnter, uintptr(r.fd), uintptr(submit), uintptr(wait), flags, 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			submit = 0 // what was submitted stays submitted
			continue
		}
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
}

// serveUring: every turn submits the queued recvs and sends and waits for
// at least one completion. Accepting stays a plain accept4 per turn: the
// load opens its connections once.
func serveUring(lfd int) error {
	r, err := newRing(1024)
	if err != nil {
		return err
	}
	clients := map[int]*client{}
	recv := func(c *client) error {
		s, err := r.next()
		if err != nil {
			return err
		}
		s.opcode, s.fd = opRecv, int32(c.fd)
		s.addr, s.len = uint64(uintptr(unsafe.Pointer(&c.buf[c.n]))), uint32(len(c.buf)-c.n)
		s.userData = uint64(c.fd) << userDataFdShift
		return nil
	}
	send := func(c *client) error {
		s, err := r.next()
		if err != nil {
			return err
		}
		s.opcode, s.fd = opSend, int32(c.fd)
		s.addr, s.len = uint64(uintptr(unsafe.Pointer(&response[0]))), uint32(len(response))
		s.userData = uint64(c.fd)<<userDataFdShift | userDataSendFlag
		return nil
	}
	add := func(c *client) error {
		clients[c.fd] = c
		return recv(c)
	}
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
		if err := r.enter(1); err != nil {
			return err
		}
		head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail) // acquire: the entries are written
		for ; head != tail; head++ {
			e := r.cqes[head&r.cqMask]
			c := clients[int(e.userData>>userDataFdShift)]
			if c == nil || e.userData&userDataSendFlag != 0 {
				continue // a send's result: the next recv sees a broken connection
			}
			if e.res <= 0 {
				if e.res == -int32(unix.EAGAIN) || e.res == -int32(unix.EINTR) {
					if err := recv(c); err != nil {
						return err
					}
					continue
				}
				unix.Close(c.fd)
				delete(clients, c.fd)
				continue
			}
			c.n += int(e.res)
			for k := c.heads(); k > 0; k-- {
				if err := send(c); err != nil {
					return err
				}
			}
			if err := recv(c); err != nil {
				return err
			}
		}
		atomic.StoreUint32(r.cqHead, head)
	}
}

// serveHybrid: serveEpoll's waits and reads, but the writes go through an
// io_uring, all those of one epoll turn submitted by one io_uring_enter
// at its end (their completions reaped without waiting, next turn). It
// is the smaller change to an epoll engine: only the sends move.
func serveHybrid(lfd int) error {
	r, err := newRing(1024)
	if err != nil {
		return err
	}
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
					s, err := r.next()
					if err != nil {
						return err
					}
					s.opcode, s.fd = opSend, int32(c.fd)
					s.addr, s.len = uint64(uintptr(unsafe.Pointer(&response[0]))), uint32(len(response))
					// MSG_DONTWAIT: a full socket fails the send with
					// EAGAIN at once instead of arming a poll in the ring,
					// so every send of a turn has its result when
					// io_uring_enter returns.
					s.opFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
				}
				if m < room {
					break
				}
			}
		}
		if submitted := r.queued; submitted > 0 {
			if err := r.enter(0); err != nil {
				return err
			}
			// The sends' results: a failed one shows as the connection's
			// end on its next read.
			head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
			if tail-head != submitted {
				lateSends.Add(1)
			}
			atomic.StoreUint32(r.cqHead, tail)
		}
	}
}
