package proxyprotocol_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"berth/balancer"
	"berth/balancer/proxyprotocol"
	"berth/balancer/sockio"
	"berth/balancer/trust"
)

// headWorker answers every request with the request head it received.
func headWorker(t *testing.T) *balancer.Upstream {
	t.Helper()
	path := t.TempDir() + "/w.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var head bytes.Buffer
					for {
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						head.Write(line)
						if len(line) <= 2 {
							break
						}
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", head.Len(), head.Bytes())
				}
			}()
		}
	}()
	return &balancer.Upstream{Name: "w1", Network: "unix", Addr: path}
}

// frontDoor starts a front door on loopback behind Listen(cfg) and returns
// its address.
func frontDoor(t *testing.T, cfg proxyprotocol.Config) string {
	t.Helper()
	p := balancer.NewPool(balancer.PoolConfig{})
	p.Add(headWorker(t))
	px, err := balancer.NewProxy(balancer.ProxyConfig{Pool: p, Trusted: cfg.Trusted})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := balancer.NewServer(balancer.ServerConfig{Handler: px, Listeners: []net.Listener{proxyprotocol.Listen(l, cfg)}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(t.Context())
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func header(version byte, src string) *proxyproto.Header {
	ap := netip.MustParseAddrPort(src)
	tp := proxyproto.TCPv4
	dst := netip.MustParseAddrPort("192.0.2.1:80")
	if ap.Addr().Is6() {
		tp = proxyproto.TCPv6
		dst = netip.MustParseAddrPort("[2001:db8::1]:80")
	}
	return &proxyproto.Header{
		Version: version, Command: proxyproto.PROXY, TransportProtocol: tp,
		SourceAddr: net.TCPAddrFromAddrPort(ap), DestinationAddr: net.TCPAddrFromAddrPort(dst),
	}
}

// exchange dials addr, writes pre (a PROXY header or nothing) and one
// request, and returns the response body, or the error that ended it.
func exchange(t *testing.T, addr string, pre *proxyproto.Header, extra string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if pre != nil {
		if _, err := pre.WriteTo(c); err != nil {
			return "", err
		}
	}
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: shop.example\r\n"+extra+"\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func field(head, name string) string {
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func TestTrustedPeerHeader(t *testing.T) {
	addr := frontDoor(t, proxyprotocol.Config{}) // loopback is trusted
	tests := []struct {
		name    string
		hdr     *proxyproto.Header
		wantXFF string
		wantFwd string
	}{
		{name: "v2 IPv4", hdr: header(2, "203.0.113.7:4000"), wantXFF: "203.0.113.7", wantFwd: `for=203.0.113.7;host="shop.example";proto=http`},
		{name: "v1 IPv4", hdr: header(1, "198.51.100.9:4000"), wantXFF: "198.51.100.9", wantFwd: `for=198.51.100.9;host="shop.example";proto=http`},
		{name: "v2 IPv6", hdr: header(2, "[2001:db8::7]:4000"), wantXFF: "2001:db8::7", wantFwd: `for="[2001:db8::7]";host="shop.example";proto=http`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head, err := exchange(t, addr, tt.hdr, "")
			if err != nil {
				t.Fatalf("request with a PROXY header from a trusted peer failed: %v", err)
			}
			if got := field(head, "X-Forwarded-For"); got != tt.wantXFF {
				t.Errorf("app saw X-Forwarded-For %q, want %q\n%s", got, tt.wantXFF, head)
			}
			if got := field(head, "Forwarded"); got != tt.wantFwd {
				t.Errorf("app saw Forwarded %q, want %q", got, tt.wantFwd)
			}
		})
	}
}

func TestTrustedPeerWithoutHeaderIsClosed(t *testing.T) {
	addr := frontDoor(t, proxyprotocol.Config{HeaderTimeout: time.Second})
	head, err := exchange(t, addr, nil, "")
	if err == nil {
		t.Fatalf("a trusted peer without a PROXY header was served; the app saw:\n%s", head)
	}
}

func TestUntrustedPeer(t *testing.T) {
	cfg := proxyprotocol.Config{Trusted: trust.New(netip.MustParsePrefix("192.0.2.0/24"))}
	addr := frontDoor(t, cfg)
	t.Run("header refused", func(t *testing.T) {
		head, err := exchange(t, addr, header(2, "203.0.113.7:4000"), "")
		if err == nil {
			t.Fatalf("an untrusted peer's PROXY header was accepted; the app saw:\n%s", head)
		}
	})
	t.Run("plain HTTP served by its own address", func(t *testing.T) {
		head, err := exchange(t, addr, nil, "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if got := field(head, "X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("app saw X-Forwarded-For %q, want the peer's own 127.0.0.1 (its forged field replaced)\n%s", got, head)
		}
		if got := field(head, "Forwarded"); got != `for=127.0.0.1;host="shop.example";proto=http` {
			t.Errorf("app saw Forwarded %q, want only berth's element", got)
		}
	})
}

// A client that connects and sends nothing must not hold up the accept
// loop: the next connection is served while it waits.
func TestSilentClientDoesNotBlockAccept(t *testing.T) {
	addr := frontDoor(t, proxyprotocol.Config{HeaderTimeout: 30 * time.Second})
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	if _, err := exchange(t, addr, header(2, "203.0.113.7:4000"), ""); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second connection waited %s behind a silent one", d)
	}
}

// TestConnectionsReadThroughSockio: behind the header, a connection is
// read and written through a sockio.Conn, like the front door's own.
func TestConnectionsReadThroughSockio(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := proxyprotocol.Listen(ln, proxyprotocol.Config{})
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		header(2, "203.0.113.7:4000").WriteTo(c)
		io.WriteString(c, "ping")
		io.Copy(io.Discard, c)
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf, err)
	}
	pc, ok := c.(*proxyproto.Conn)
	if !ok {
		t.Fatalf("accepted a %T, want a *proxyproto.Conn", c)
	}
	if _, ok := pc.Raw().(*sockio.Conn); !ok {
		t.Fatalf("the PROXY-protocol connection reads through a %T, not a sockio.Conn", pc.Raw())
	}
	if got := c.RemoteAddr().String(); got != "203.0.113.7:4000" {
		t.Errorf("RemoteAddr %s, want the header's 203.0.113.7:4000", got)
	}
}
