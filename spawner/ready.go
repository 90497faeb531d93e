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
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Readiness listens on a worker's two readiness sockets (the systemd back
// end keeps one for the whole life of a worker name): a stream socket for
// the Node loader (BERTH_READY_SOCKET) and a datagram socket speaking
// sd_notify (NOTIFY_SOCKET). It records the pid of every process that sent
// READY=1, from the kernel's credentials (SO_PEERCRED, SCM_CREDENTIALS), so
// that a start accepts only the readiness of its own invocation: a message
// cannot be early, late or from the wrong process. The sockets stay across
// worker restarts because systemd may restart a worker by itself (its
// socket unit activates the service when a request waits).
//
// A stream connection that sent READY=1 stays open for the worker's life:
// the loader writes "WATCHDOG=1\n" heartbeats on it and answers "OOB=1\n"
// with "OOB_DONE=1\n" (see Liveness).
type Readiness struct {
	StreamPath, DgramPath string

	stream *net.UnixListener
	dgram  *net.UnixConn
	wg     sync.WaitGroup // the accept and read loops, one per connection

	mu      sync.Mutex             // protects pids, changed, peers, conns, closed
	pids    map[int]bool           // senders of READY=1
	changed chan struct{}          // closed and replaced when pids grows
	peers   map[int]*peer          // open ready connections, by sender pid
	conns   map[*net.UnixConn]bool // every open stream connection
	closed  bool
}

// peer is a stream connection that reported READY=1.
type peer struct {
	conn *net.UnixConn
	beat atomic.Int64  // unix nanoseconds of READY=1 or the last WATCHDOG=1
	gone chan struct{} // closed when the connection ends

	mu  sync.Mutex    // protects oob; serializes writes
	oob chan struct{} // closed by the next OOB_DONE=1; nil if none asked
}

// ListenReadiness makes the sockets at stream and dgram, mode 0600, owned
// by uid:gid (a negative uid keeps berth's own) so that only the worker's
// user (and root) can report.
func ListenReadiness(stream, dgram string, uid, gid int) (*Readiness, error) {
	r := &Readiness{StreamPath: stream, DgramPath: dgram, pids: map[int]bool{}, changed: make(chan struct{}),
		peers: map[int]*peer{}, conns: map[*net.UnixConn]bool{}}
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
	r.recordReady(pid)
}

func (r *Readiness) recordReady(pid int) {
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

// readyTimeout is how long a stream connection may stay open without
// READY=1.
const readyTimeout = 10 * time.Second

func (r *Readiness) acceptStream() {
	defer r.wg.Done()
	for {
		c, err := r.stream.AcceptUnix()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = true
		r.wg.Add(1)
		r.mu.Unlock()
		go r.serveStream(c)
	}
}

// serveStream reads one stream connection: READY=1, then heartbeats and
// out-of-band answers until it closes.
func (r *Readiness) serveStream(c *net.UnixConn) {
	defer r.wg.Done()
	pid := peerPid(c)
	var p *peer
	defer func() {
		c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		if p != nil && r.peers[pid] == p {
			delete(r.peers, pid)
		}
		r.mu.Unlock()
		if p != nil {
			close(p.gone)
		}
	}()
	c.SetReadDeadline(time.Now().Add(readyTimeout))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		switch string(bytes.TrimSpace(sc.Bytes())) {
		case "READY=1":
			if pid <= 0 {
				continue
			}
			if p == nil {
				// A connection kept open after READY=1 carries heartbeats
				// (the loader's): the loop ran now. A loop blocked before
				// its first WATCHDOG=1 counts as blocked from here.
				p = &peer{conn: c, gone: make(chan struct{})}
				p.beat.Store(time.Now().UnixNano())
				c.SetReadDeadline(time.Time{})
				r.mu.Lock()
				r.peers[pid] = p
				r.mu.Unlock()
			}
			r.recordReady(pid)
		case "WATCHDOG=1":
			if p != nil {
				p.beat.Store(time.Now().UnixNano())
			}
		case "OOB_DONE=1":
			if p != nil {
				p.mu.Lock()
				if p.oob != nil {
					close(p.oob)
					p.oob = nil
				}
				p.mu.Unlock()
			}
		}
	}
}

// Liveness returns the heartbeats and out-of-band channel of the worker
// process pid (the one whose READY=1 a start accepted).
func (r *Readiness) Liveness(pid int) Liveness { return &liveness{r: r, pid: pid} }

type liveness struct {
	r   *Readiness
	pid int
}

func (l *liveness) peer() *peer {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	return l.r.peers[l.pid]
}

// LastHeartbeat implements Liveness.
func (l *liveness) LastHeartbeat() time.Time {
	p := l.peer()
	if p == nil {
		return time.Time{}
	}
	if n := p.beat.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ErrNoLiveness is returned by OutOfBand for a worker without an open
// readiness connection (an app that does not use the Node loader).
var ErrNoLiveness = errors.New("spawner: worker keeps no readiness connection open")

// OutOfBand implements Liveness.
func (l *liveness) OutOfBand(ctx context.Context) error {
	p := l.peer()
	if p == nil {
		return ErrNoLiveness
	}
	p.mu.Lock()
	if p.oob == nil {
		p.oob = make(chan struct{})
	}
	done := p.oob
	p.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := p.conn.Write([]byte("OOB=1\n"))
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ask pid %d for out-of-band work: %w", l.pid, err)
	}
	select {
	case <-done:
		return nil
	case <-p.gone:
		return fmt.Errorf("pid %d: readiness connection closed before OOB_DONE=1", l.pid)
	case <-ctx.Done():
		return ctx.Err()
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

// Close stops listening, closes open connections, removes the socket
// files and waits for the readers to return.
func (r *Readiness) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.stream.Close() // removes the stream socket file
	r.dgram.Close()
	os.Remove(r.DgramPath)
	r.wg.Wait()
}

// ReadyWait is one wait for a started worker to become ready, the same for
// both back ends.
type ReadyWait struct {
	// Readiness receives the worker's READY=1.
	Readiness *Readiness
	// Accept reports whether a READY=1 from pid counts for this worker.
	Accept func(pid int) bool
	// Exited is closed when the worker's process ended; ExitErr says why.
	Exited  <-chan struct{}
	ExitErr func() error
	// Probe also counts the worker ready once it answers at Network/Addr.
	Probe         bool
	Network, Addr string
}

// Wait returns once the worker is ready, with the pid whose READY=1
// counted (0 when the probe answered). If the worker exits first, the
// error wraps ErrExited; if ctx ends first (the spawn timeout), it wraps
// ErrSpawnTimeout.
func (rw ReadyWait) Wait(ctx context.Context) (int, error) {
	probed := make(chan struct{})
	if rw.Probe {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		defer func() { cancel(); <-done }()
		go func() {
			defer close(done)
			if probe(pctx, rw.Network, rw.Addr) {
				close(probed)
			}
		}()
	}
	for {
		pids, changed := rw.Readiness.ReadyFrom()
		for pid := range pids {
			if rw.Accept(pid) {
				return pid, nil
			}
		}
		select {
		case <-changed:
		case <-probed:
			return 0, nil
		case <-rw.Exited:
			return 0, fmt.Errorf("%w (%v)", ErrExited, rw.ExitErr())
		case <-ctx.Done():
			return 0, NotReady(ctx.Err())
		}
	}
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
