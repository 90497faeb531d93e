package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFdsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFdsStart = 3

// Listener is a listening socket and the name systemd gave it
// (FileDescriptorName=), or the address it was bound from.
type Listener struct {
	net.Listener
	// Name is the LISTEN_FDNAMES entry for an inherited socket ("unknown"
	// when systemd gave none), or the --listen address for a bound one.
	Name string
	// Inherited reports whether the socket came from the service manager.
	Inherited bool
}

// Config says where Listen looks for sockets. The zero value reads the real
// environment and binds nothing when nothing is inherited.
type Config struct {
	// Getenv reads the environment. If nil, os.Getenv is used.
	Getenv func(string) string
	// Unsetenv removes a variable so that child processes do not inherit
	// it. If nil, os.Unsetenv is used.
	Unsetenv func(string) error
	// Pid is this process's pid, compared with LISTEN_PID. If zero,
	// os.Getpid() is used.
	Pid int
	// Fallback lists the addresses bound when no socket was inherited:
	// "host:port", ":port", "[::1]:port" or "unix:/path".
	Fallback []string
}

// Listen returns the inherited sockets if the process was socket-activated,
// else binds cfg.Fallback. Either way the LISTEN_* variables are removed
// from the environment so workers do not inherit them.
func Listen(cfg Config) ([]Listener, error) {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Unsetenv == nil {
		cfg.Unsetenv = os.Unsetenv
	}
	if cfg.Pid == 0 {
		cfg.Pid = os.Getpid()
	}
	ls, err := inherited(cfg)
	for _, k := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} {
		cfg.Unsetenv(k)
	}
	if err != nil || len(ls) > 0 {
		return ls, err
	}
	if len(cfg.Fallback) == 0 {
		return nil, errors.New("activation: no socket inherited and no address to listen on")
	}
	for _, addr := range cfg.Fallback {
		l, err := Bind(addr)
		if err != nil {
			closeAll(ls)
			return nil, err
		}
		ls = append(ls, Listener{Listener: l, Name: addr})
	}
	return ls, nil
}

// inherited returns the sockets passed with LISTEN_FDS, or none when the
// variables are absent or meant for another process.
func inherited(cfg Config) ([]Listener, error) {
	fdsStr := cfg.Getenv("LISTEN_FDS")
	if fdsStr == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(cfg.Getenv("LISTEN_PID"))
	if err != nil || pid != cfg.Pid {
		// Meant for another process (or malformed): systemd's own
		// sd_listen_fds ignores them the same way.
		return nil, nil
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("activation: LISTEN_FDS=%q is not a count of file descriptors", fdsStr)
	}
	var names []string
	if s := cfg.Getenv("LISTEN_FDNAMES"); s != "" {
		names = strings.Split(s, ":")
	}
	var ls []Listener
	for i := 0; i < n; i++ {
		fd := listenFdsStart + i
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), name)
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("activation: inherited fd %d (%s) is not a listening stream socket: %w", fd, name, err)
		}
		ls = append(ls, Listener{Listener: l, Name: name, Inherited: true})
	}
	return ls, nil
}

// Bind listens on addr: "unix:/path" for a Unix socket (a stale socket file
// left by a dead process is replaced), anything else as a TCP "host:port".
func Bind(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("listen %s: empty socket path", addr)
		}
		removeStaleSocket(path)
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return l, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("listen %s: want host:port, :port or unix:/path: %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody answers on.
func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return
	}
	os.Remove(path)
}

func closeAll(ls []Listener) {
	for _, l := range ls {
		l.Close()
	}
}
