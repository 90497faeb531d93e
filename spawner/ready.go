package spawner

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// readiness listens on a worker's two readiness sockets — a stream socket
// for the Node loader (BERTH_READY_SOCKET) and a datagram socket speaking
// sd_notify (NOTIFY_SOCKET) — and closes Ready when either carries READY=1.
type readiness struct {
	StreamPath, DgramPath string
	ready                 chan struct{}
	once                  sync.Once
	stream                *net.UnixListener
	dgram                 *net.UnixConn
	wg                    sync.WaitGroup
}

// listenReadiness makes the sockets at stream and dgram, mode 0600, owned
// by uid/gid when uid >= 0.
func listenReadiness(stream, dgram string, uid, gid int) (*readiness, error) {
	r := &readiness{StreamPath: stream, DgramPath: dgram, ready: make(chan struct{})}
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
	for _, p := range []string{stream, dgram} {
		if err := secureSocket(p, uid, gid); err != nil {
			r.Close()
			return nil, err
		}
	}
	r.wg.Add(2)
	go r.acceptStream()
	go r.readDgram()
	return r, nil
}

// Ready is closed once the worker reported READY=1.
func (r *readiness) Ready() <-chan struct{} { return r.ready }

func (r *readiness) markReady(msg []byte) {
	for _, line := range bytes.Split(msg, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == "READY=1" {
			r.once.Do(func() { close(r.ready) })
		}
	}
}

func (r *readiness) acceptStream() {
	defer r.wg.Done()
	for {
		c, err := r.stream.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				r.markReady(sc.Bytes())
			}
		}()
	}
}

func (r *readiness) readDgram() {
	defer r.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, _, err := r.dgram.ReadFromUnix(buf)
		if err != nil {
			return
		}
		r.markReady(buf[:n])
	}
}

// Close stops listening, removes the socket files and waits for the
// readers to return.
func (r *readiness) Close() {
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
