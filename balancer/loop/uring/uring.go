// Package uring drives an io_uring (io_uring(7)) for sends: one ring per
// event loop, whose sends of a turn go to the kernel in one
// io_uring_enter instead of one system call each. It is the minimum the
// loop engine needs (setup, the two mappings, queue, submit, reap), over
// the kernel's ABI through x/sys/unix: no Go io_uring module is served to
// the machines berth is built on (DESIGN.md, "The system-call floor, and
// io_uring"). A Ring is used by one goroutine at a time.
package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's io_uring ABI (include/uapi/linux/io_uring.h), the part used.
const (
	sysSetup       = 425
	sysEnter       = 426
	opSend         = 26
	enterGetEvents = 1
	offSQEs        = 0x10000000
	featSingleMmap = 1
)

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode, Flags uint8
	Ioprio        uint16
	Fd            int32
	Off, Addr     uint64
	Len, OpFlags  uint32
	UserData      uint64
	BufIndex      uint16
	Personality   uint16
	SpliceFdIn    int32
	Addr3, Pad    uint64
}

// CQE is struct io_uring_cqe (16 bytes).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Ring is one io_uring, mapped from the kernel.
type Ring struct {
	fd             int
	sqHead, sqTail *uint32 // the kernel moves head, we move tail
	sqMask         uint32
	sqArray        []uint32
	sqes           []SQE
	cqHead, cqTail *uint32 // we move head, the kernel moves tail
	cqMask         uint32
	cqes           []CQE
	queued         uint32 // entries filled since the last Submit
	maps           [2][]byte
}

// New sets up a ring of at least entries submission entries.
func New(entries uint32) (*Ring, error) {
	var p params
	fd, _, errno := unix.Syscall(sysSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	if p.features&featSingleMmap == 0 {
		r.Close()
		return nil, fmt.Errorf("io_uring: this kernel maps the two rings apart (no IORING_FEAT_SINGLE_MMAP)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	rb, err := unix.Mmap(r.fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring rings: %w", err)
	}
	r.maps[0] = rb
	sb, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring entries: %w", err)
	}
	r.maps[1] = sb
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rb[off])) }
	r.sqHead, r.sqTail, r.sqMask = at(p.sqOff.head), at(p.sqOff.tail), *at(p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(at(p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sb[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = at(p.cqOff.head), at(p.cqOff.tail), *at(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&rb[p.cqOff.cqes])), p.cqEntries)
	return r, nil
}

// Close unmaps the ring and closes it. Nothing queued is submitted.
func (r *Ring) Close() error {
	for i, m := range r.maps {
		if m != nil {
			unix.Munmap(m)
			r.maps[i] = nil
		}
	}
	return unix.Close(r.fd)
}

// Next returns a cleared submission entry to fill, or nil when the queue
// is full until the next Submit.
func (r *Ring) Next() *SQE {
	tail := atomic.LoadUint32(r.sqTail) + r.queued
	if tail-atomic.LoadUint32(r.sqHead) >= uint32(len(r.sqes)) {
		return nil
	}
	i := tail & r.sqMask
	r.sqArray[i] = i
	r.queued++
	s := &r.sqes[i]
	*s = SQE{}
	return s
}

// QueueSend queues a send of p on fd with MSG_DONTWAIT and MSG_NOSIGNAL,
// carrying userData to its completion, and reports whether there was room.
// With MSG_DONTWAIT a socket without room fails the send with EAGAIN at
// once instead of the ring waiting for room, so the send has its result
// when Submit returns. p must stay where it is until then (heap memory,
// which the collector does not move).
func (r *Ring) QueueSend(fd int, p []byte, userData uint64) bool {
	s := r.Next()
	if s == nil {
		return false
	}
	s.Opcode, s.Fd = opSend, int32(fd)
	s.Addr, s.Len = uint64(uintptr(unsafe.Pointer(&p[0]))), uint32(len(p))
	s.OpFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
	s.UserData = userData
	return true
}

// Queued is the number of entries queued since the last Submit.
func (r *Ring) Queued() int { return int(r.queued) }

// Discard drops what was queued since the last Submit.
func (r *Ring) Discard() { r.queued = 0 }

// Submit hands the queued entries to the kernel in one io_uring_enter and
// waits until at least wait completions are there.
func (r *Ring) Submit(wait int) error {
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+r.queued) // release: the entries are written
	submit := r.queued
	r.queued = 0
	var flags uintptr
	if wait > 0 {
		flags = enterGetEvents
	}
	for {
		_, _, errno := unix.Syscall6(sysEnter, uintptr(r.fd), uintptr(submit), uintptr(wait), flags, 0, 0)
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

// Ready is the number of completions waiting to be reaped.
func (r *Ring) Ready() int {
	return int(atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)) // acquire: the entries are written
}

// Reap calls f with each completion there, in order, and frees them.
func (r *Ring) Reap(f func(CQE)) {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		f(r.cqes[head&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, head)
}
