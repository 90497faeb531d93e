package balancer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"berth/balancer/h1"
)

// HTTP/2 reaches the chain through net/http's own HTTP/2 server: the
// front door does the TLS handshake of every TLS connection itself, and
// one that negotiated "h2" by ALPN is handed to an http.Server (through a
// listener of handed-over connections) whose handler turns each stream
// into an Exchange. Links and the proxy see the same Exchange as for
// HTTP/1.1; requests still reach workers as HTTP/1.1. Shutdown sends
// GOAWAY (http.Server.Shutdown) and waits for the streams in progress.

// h2Front is the front door's HTTP/2 side.
type h2Front struct {
	s   *Server
	srv *http.Server
	l   *handoffListener
}

func newH2Front(s *Server) *h2Front {
	f := &h2Front{s: s, l: newHandoffListener()}
	f.srv = &http.Server{
		Handler:     http.HandlerFunc(f.serveHTTP),
		IdleTimeout: s.cfg.IdleTimeout,
		// A stream's head and body are bounded by the h2 server's own
		// flow control and these.
		ReadHeaderTimeout: s.cfg.HeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes(s.cfg.Limits),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	return f
}

func maxHeaderBytes(l h1.Limits) int {
	if l.MaxHeaderBytes > 0 {
		return l.MaxHeaderBytes
	}
	return h1.DefaultMaxHeaderBytes
}

// serve runs the HTTP/2 server until shutdown or close.
func (f *h2Front) serve() {
	f.srv.Serve(f.l)
}

// handoff gives the HTTP/2 server a connection that negotiated h2.
func (f *h2Front) handoff(c *tls.Conn) {
	if !f.l.deliver(c) {
		c.Close()
	}
}

func (f *h2Front) shutdown(ctx context.Context) error { return f.srv.Shutdown(ctx) }
func (f *h2Front) close()                             { f.srv.Close() }

// h2Stream is one HTTP/2 request as an Exchange sees it.
type h2Stream struct {
	w  h2Writer
	up atomic.Pointer[upConn]
}

// serveHTTP turns an HTTP/2 stream into an Exchange for the chain.
func (f *h2Front) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		http.Error(w, "berth: CONNECT is not served here", http.StatusMethodNotAllowed)
		return
	}
	st := &h2Stream{w: h2Writer{w: w, rc: http.NewResponseController(w), head: r.Method == "HEAD"}}
	// Close breaks a wait on the worker, as for HTTP/1.1 connections.
	stop := context.AfterFunc(f.s.ctx, func() {
		if uc := st.up.Load(); uc != nil {
			uc.c.Close()
		}
	})
	defer stop()

	req := h1.Request{Method: []byte(r.Method), Target: []byte(r.RequestURI), Minor: 1, KeepAlive: true}
	req.Header = make(h1.Fields, 0, len(r.Header)+1)
	req.Header.Add([]byte("Host"), []byte(r.Host))
	for name, vs := range r.Header {
		if name == "Host" {
			continue
		}
		n := []byte(name)
		for _, v := range vs {
			req.Header.Add(n, []byte(v))
		}
	}
	var body io.Reader = r.Body
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		req.ContentLength, body = 0, http.NoBody
	case r.ContentLength > 0:
		req.ContentLength = r.ContentLength
	default:
		req.ContentLength, req.Chunked = -1, true
	}
	peer := addrPort(r.RemoteAddr)
	x := Exchange{Req: &req, Body: body, Client: peer, Peer: peer, TLS: true, W: &st.w, ctx: r.Context(), h2: st}
	f.s.cfg.Handler.ServeExchange(&x)
	if !st.w.wroteHead {
		writeText(&st.w, 500, "berth: the request was not answered\n", nil)
	}
	if st.w.broken {
		panic(http.ErrAbortHandler) // resets the stream: the answer is incomplete
	}
	if len(st.w.trailer) > 0 {
		h := w.Header()
		for _, f := range st.w.trailer {
			h.Add(http.TrailerPrefix+string(f.Name), string(f.Value))
		}
	}
}

func addrPort(s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// h2Writer is a ResponseWriter over an HTTP/2 stream's
// http.ResponseWriter.
type h2Writer struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	head      bool
	wroteHead bool
	broken    bool
	status    int
	written   int64
	trailer   h1.Fields
}

// Status is the final status written, 0 before WriteHead (for the
// metrics and access-log links, as the HTTP/1.1 writer tells it).
func (hw *h2Writer) Status() int { return hw.status }

// Written is the count of body bytes written.
func (hw *h2Writer) Written() int64 { return hw.written }

func (hw *h2Writer) WriteHead(resp *h1.Response) error {
	if resp.Status == 101 {
		return errors.New("balancer: no protocol switch over HTTP/2")
	}
	interim := resp.Status/100 == 1
	if !interim {
		if hw.wroteHead {
			return errors.New("balancer: response head written twice")
		}
		hw.wroteHead = true
		hw.status = resp.Status
	}
	h := hw.w.Header()
	conns := resp.Header.Has("Connection")
	for _, f := range resp.Header {
		if skipResponseField(f.Name, resp, false, conns) {
			continue
		}
		h.Add(string(f.Name), string(f.Value))
	}
	if !interim && resp.ContentLength >= 0 && (!h1.NoBody(resp.Status) || hw.head) {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	hw.w.WriteHeader(resp.Status)
	if interim {
		clear(h) // the final head starts afresh
	}
	return nil
}

func (hw *h2Writer) Write(p []byte) (int, error) {
	if !hw.wroteHead {
		return 0, errors.New("balancer: body written before the head")
	}
	n, err := hw.w.Write(p)
	hw.written += int64(n)
	if err != nil {
		err = errors.Join(errClientWrite, err)
	}
	return n, err
}

func (hw *h2Writer) Flush() error {
	if err := hw.rc.Flush(); err != nil {
		return errors.Join(errClientWrite, err)
	}
	return nil
}

// handoffListener is a net.Listener whose connections are handed to it
// by the front door.
type handoffListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to Accept; false once the listener is closed.
func (l *handoffListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }

// handshake runs a TLS connection's handshake within HeaderTimeout. It
// reports whether the connection goes on as HTTP/1.1; a failed one is
// closed, and one that negotiated h2 is handed to the HTTP/2 server.
func (cn *conn) handshake() bool {
	tc, ok := cn.c.(*tls.Conn)
	if !ok {
		return true
	}
	tc.SetDeadline(time.Now().Add(cn.s.cfg.HeaderTimeout))
	if err := tc.HandshakeContext(cn.s.ctx); err != nil {
		cn.s.log.Debug("TLS handshake failed", "client", cn.c.RemoteAddr().String(), "err", err)
		tc.Close()
		return false
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		return true
	}
	if cn.s.h2 == nil {
		tc.Close()
		return false
	}
	cn.s.h2.handoff(tc)
	return false
}
