package spawner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Readiness listens on a worker's two readiness sockets (the systemd back
// end keeps one for the whole life of a worker slot): a stream socket for the Node loader
// (BERTH_READY_SOCKET) and a datagram socket speaking sd_notify
// (NOTIFY_SOCKET). It records the pid of every process that sent READY=1,
// from the kernel's credentials (SO_PEERCRED, SCM_CREDENTIALS), so that a
// start accepts only the readiness of its own invocation: a message cannot
// be early, late or from the wrong process. The sockets stay across worker
// restarts because systemd may restart a worker by itself (its socket unit
// activates the service when a request waits).
type Readiness struct {
	StreamPath, DgramPath string

	stream *net.UnixListener
	dgram  *net.UnixConn
	wg     sync.WaitGroup

	mu      sync.Mutex    // protects pids, changed
	pids    map[int]bool  // senders of READY=1
	changed chan struct{} // closed and replaced when pids grows
}

// ListenReadiness makes the sockets at stream and dgram, mode 0600, owned
// by uid:gid (a negative uid keeps berth's own) so that only the worker's
// user (and root) can report.
func ListenReadiness(stream, dgram string, uid, gid int) (*Readiness, error) {
	r := &Readiness{StreamPath: stream, DgramPath: dgram, pids: map[int]bool{}, changed: make(chan struct{})}
	os.Remove(stream)
	os.Remove(dgram)
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stream, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("readiness socket %s: %w", stream, err)
	}
	r.stream = sl
	dc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dgram, Net: "unixgram"})
	if err != nil {
		sl.Close()
		return nil, fmt.Errorf("notify socket %s: %w", dgram, err)
	}
	r.dgram = dc
	if err := setPassCred(dc); err != nil {
		r.Close()
		return nil, fmt.Errorf("notify socket %s: %w", dgram, err)
	}
	for _, p := range []string{stream, dgram} {
		if err := os.Chmod(p, 0o600); err != nil {
			r.Close()
			return nil, fmt.Errorf("readiness socket %s: %w", p, err)
		}
		if uid < 0 {
			continue
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			r.Close()
			return nil, fmt.Errorf("readiness socket %s: %w", p, err)
		}
	}
	r.wg.Add(2)
	go r.acceptStream()
	go r.readDgram()
	return r, nil
}

func setPassCred(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// ReadyFrom returns the pids that reported READY=1 and a channel closed
// when another one does.
func (r *Readiness) ReadyFrom() (map[int]bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pids := make(map[int]bool, len(r.pids))
	for p := range r.pids {
		pids[p] = true
	}
	return pids, r.changed
}

func (r *Readiness) record(pid int, msg []byte) {
	if pid <= 0 || !isReady(msg) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pids) > 64 { // keep only the living
		for p := range r.pids {
			if unix.Kill(p, 0) != nil {
				delete(r.pids, p)
			}
		}
	}
	r.pids[pid] = true
	close(r.changed)
	r.changed = make(chan struct{})
}

func isReady(msg []byte) bool {
	for _, line := range bytes.Split(msg, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == "READY=1" {
			return true
		}
	}
	return false
}

func (r *Readiness) acceptStream() {
	defer r.wg.Done()
	for {
		c, err := r.stream.AcceptUnix()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			pid := peerPid(c)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				r.record(pid, sc.Bytes())
			}
		}()
	}
}

// peerPid returns the pid of the process that connected c (SO_PEERCRED),
// or 0.
func peerPid(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return 0
	}
	return int(cred.Pid)
}

func (r *Readiness) readDgram() {
	defer r.wg.Done()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := r.dgram.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pid := 0
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					pid = int(cred.Pid)
				}
			}
		}
		r.record(pid, buf[:n])
	}
}

// Close stops listening, removes the socket files and waits for the
// readers to return.
func (r *Readiness) Close() {
	r.stream.Close() // removes the stream socket file
	r.dgram.Close()
	os.Remove(r.DgramPath)
	r.wg.Wait()
}

// probe reports readiness once a connection to network/addr gets any answer
// to an HTTP request (or, for TCP, once anything accepts: a port an app
// bound itself is ready when it is listening). It returns when ready or ctx
// ends.
func probe(ctx context.Context, network, addr string) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if probeOnce(ctx, network, addr) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func probeOnce(ctx context.Context, network, addr string) bool {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, network, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if network == "tcp" {
		return true
	}
	// A Unix socket berth made accepts into its backlog before the app
	// listens: only an answer proves the app is serving.
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("OPTIONS * HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")); err != nil {
		return false
	}
	var b [1]byte
	n, _ := c.Read(b[:])
	return n > 0
}

// secureSocket makes a socket file mode 0600 and, when uid >= 0, owned by
// uid:gid, so that only berth and that worker can use it.
func secureSocket(path string, uid, gid int) error {
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("secure socket %s: %w", path, err)
	}
	if uid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("secure socket %s: %w", path, err)
		}
	}
	return nil
}
