package loop

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listener accepts connections as raw descriptors, for Adopt: the
// runtime's poller waits for the listening socket (once per burst of
// connections, not per request), and never sees what it accepts.
type Listener struct {
	f   *os.File // our own descriptor of the listening socket
	rc  syscall.RawConn
	tcp bool

	closed atomic.Bool
}

// Listen returns a Listener on the socket of l, a *net.TCPListener or
// *net.UnixListener. It holds a descriptor of its own: the socket stays
// open until both l and the Listener are closed.
func Listen(l net.Listener) (*Listener, error) {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("loop: listener %T has no descriptor", l)
	}
	lrc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("loop: listener %s: %w", l.Addr(), err)
	}
	fd := -1
	var derr error
	if err := lrc.Control(func(lfd uintptr) {
		fd, derr = unix.FcntlInt(lfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("loop: listener %s: %w", l.Addr(), err)
	}
	if derr != nil {
		return nil, fmt.Errorf("loop: duplicate listener %s: %w", l.Addr(), derr)
	}
	// The duplicate shares the socket's O_NONBLOCK, so os.NewFile puts
	// it in the runtime's poller, and Close ends a waiting Accept.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("loop: listener %s: %w", l.Addr(), err)
	}
	f := os.NewFile(uintptr(fd), "listener "+l.Addr().String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("loop: listener %s: %w", l.Addr(), err)
	}
	_, tcp := l.(*net.TCPListener)
	return &Listener{f: f, rc: rc, tcp: tcp}, nil
}

// Accept waits for a connection and returns its descriptor, non-blocking
// and close-on-exec, and the peer's address; the connection has what net.Listener's Accept sets on a TCP
// connection (no Nagle delay, keep-alive probes after 15 s). After Close
// it returns net.ErrClosed.
func (l *Listener) Accept() (int, net.Addr, error) {
	for {
		fd := -1
		var sa unix.Sockaddr
		var aerr error
		err := l.rc.Read(func(lfd uintptr) bool {
			fd, sa, aerr = unix.Accept4(int(lfd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil {
			if l.closed.Load() {
				return -1, nil, net.ErrClosed
			}
			return -1, nil, err
		}
		switch aerr {
		case nil:
		case unix.ECONNABORTED, unix.EINTR:
			continue // the client left before we took it
		default:
			return -1, nil, os.NewSyscallError("accept4", aerr)
		}
		if l.tcp {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
		}
		return fd, sockaddrToAddr(sa), nil
	}
}

// Close closes the Listener's descriptor and ends a waiting Accept.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}
