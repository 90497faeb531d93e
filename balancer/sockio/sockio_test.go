package sockio

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// pair returns a connected pair over network ("tcp" or "unix"): the
// client end wrapped by New, and the server end as it is.
func pair(t *testing.T, network string) (*Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := New(c)
	if s == nil {
		t.Fatalf("New(%T) = nil", c)
	}
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer
}

func TestReadWriteBothWays(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			s, peer := pair(t, network)
			// More than a socket buffer holds, so the write waits for
			// room at least once.
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
			got := make(chan []byte)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
				got <- b
			}()
			if n, err := s.Write(big); n != len(big) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
			}
			if b := <-got; !bytes.Equal(b, big) {
				t.Fatalf("peer read %d bytes, not what was written", len(b))
			}

			// Reads of more than arrives at once wait on the poller.
			go peer.Write(big)
			back := make([]byte, len(big))
			if _, err := io.ReadFull(s, back); err != nil || !bytes.Equal(back, big) {
				t.Fatalf("reading 4 MiB back: %v", err)
			}
			buf := make([]byte, 64)
			peer.Close()
			if n, err := s.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	s, _ := pair(t, "tcp")
	s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := s.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %v is not a read OpError", err)
	}
}

func TestWriteDeadlineCountsWhatWasWritten(t *testing.T) {
	s, _ := pair(t, "unix")                                    // the peer never reads
	s.SetWriteDeadline(time.Now().Add(500 * time.Millisecond)) // time to fill the socket buffers first, even on a loaded machine
	big := make([]byte, 64<<20)
	n, err := s.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a peer that does not read = %d, %v; want a timeout", n, err)
	}
	if n <= 0 || n >= len(big) {
		t.Fatalf("Write reported %d bytes written; want what fitted in the socket buffers", n)
	}
}

func TestCloseBreaksARead(t *testing.T) {
	s, _ := pair(t, "tcp")
	done := make(chan error)
	go func() {
		_, err := s.Read(make([]byte, 8))
		done <- err
	}()
	s.Close() // whether the read waits already or not, it fails
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
}

// A Unix socket closed by a peer that did not read what it was sent
// resets: the proxy relies on telling that apart (ECONNRESET).
func TestResetIsReported(t *testing.T) {
	s, peer := pair(t, "unix")
	if _, err := s.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	_, err := s.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after the peer dropped unread data = %v; want ECONNRESET", err)
	}
}

// Writing to a connection the peer closed is an error (EPIPE or
// ECONNRESET), never a SIGPIPE that could stop the process.
func TestWriteToClosedPeer(t *testing.T) {
	s, peer := pair(t, "tcp")
	peer.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Write(make([]byte, 64<<10))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write to a closed peer = %v; want EPIPE or ECONNRESET", err)
	}
}

func TestReadFromSendsAFile(t *testing.T) {
	s, peer := pair(t, "tcp")
	path := filepath.Join(t.TempDir(), "f")
	want := bytes.Repeat([]byte("x"), 1<<20)
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		got <- b
	}()
	if n, err := s.ReadFrom(f); n != int64(len(want)) || err != nil {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the file", len(b))
	}
}

func TestNewRefusesWrappers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if New(a) != nil {
		t.Fatal("New(net.Pipe) is not nil: only kernel sockets can be read raw")
	}
}

// BenchmarkPingPong is one request-sized write and read each way over a
// Unix socket, through sockio and through net.Conn.
func BenchmarkPingPong(b *testing.B) {
	dir := b.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // echo
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if err != nil {
						c.Close()
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	msg := bytes.Repeat([]byte("a"), 200)
	run := func(b *testing.B, rw io.ReadWriter) {
		buf := make([]byte, 512)
		b.ReportAllocs()
		for b.Loop() {
			rw.Write(msg)
			if _, err := io.ReadFull(rw, buf[:len(msg)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, raw := range []bool{false, true} {
		name := "net.Conn"
		if raw {
			name = "sockio"
		}
		b.Run(name, func(b *testing.B) {
			c, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var rw io.ReadWriter = c
			if raw {
				rw = New(c)
			}
			run(b, rw)
		})
	}
}

// TestListenerUnderTLS: a TLS listener over Listener reads and writes the
// kernel socket through a Conn, and TLS works over it both ways.
// testCert returns a certificate for localhost and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, roots
}

func TestListenerUnderTLS(t *testing.T) {
	cert, roots := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(Listener(ln), &tls.Config{Certificates: []tls.Certificate{cert}})
	defer tl.Close()
	under := make(chan net.Conn, 1)
	go func() {
		c, err := tl.Accept()
		if err != nil {
			under <- nil
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		under <- tc.NetConn()
		io.Copy(tc, tc) // echo until the client closes
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "localhost", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("tls over sockio "), 1<<14) // 256 KiB: several records, waits for room
	go c.Write(msg)
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("echo through TLS over sockio: %v", err)
	}
	if u := <-under; u == nil {
		t.Fatal("accept failed")
	} else if _, ok := u.(*Conn); !ok {
		t.Fatalf("the TLS connection reads through a %T, not a sockio.Conn", u)
	}
}
