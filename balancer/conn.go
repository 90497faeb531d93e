package balancer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"berth/balancer/h1"
	"berth/balancer/loop"
	"berth/balancer/sockio"
)

// A connection's state, for Shutdown: new connections and idle ones are
// closed (new ones after a grace), active ones finish their request.
const (
	stateNew int32 = iota
	stateActive
	stateIdle
	stateHijacked // a protocol switch: not waited for by Shutdown
)

var aLongTimeAgo = time.Unix(1, 0)

// conn is one client connection: one goroutine reads a request, hands it
// down the chain, finishes the response, and loops while keep-alive holds.
type conn struct {
	s  *Server
	c  net.Conn
	sc *sockio.Conn // the sockio.Conn c reads through (c itself, or under TLS or the PROXY protocol), or nil
	// keepWriter: the write buffer is given back when a read for the
	// next request is about to wait (sockio tells), not after every
	// exchange.
	keepWriter bool
	state      atomic.Int32

	cr  connReader
	rd  *h1.Reader
	bw  *bufio.Writer
	req h1.Request
	x   Exchange
	w   clientWriter
	bd  requestBody

	peer    netip.AddrPort
	tls     bool
	linger  bool      // the client may still be sending: close gently
	wdl     time.Time // write deadline now armed
	trailer h1.Fields // trailer for a chunked response, set by the proxy

	// up is the worker connection an exchange is using, so Close can
	// break a wait on it.
	up atomic.Pointer[upConn]

	// task is the event loop's Task the connection runs as, nil on the
	// goroutine engine.
	task *loop.Task
}

// bufWriters holds the connections' write buffers, taken for an exchange
// and given back when the connection goes idle. 16 KiB lets a head and a
// body of a few KiB (a 4 KiB page, a small static file) leave in one
// write.
var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

func newConn(s *Server, c net.Conn, tls bool) *conn {
	cn := &conn{s: s, c: c, tls: tls}
	if sc := sockio.New(c); sc != nil {
		sc.BeforeWait = cn.waiting
		cn.c, cn.sc, cn.keepWriter = sc, sc, true
	} else {
		// A TLS or PROXY-protocol connection over a sockio.Conn (its
		// listener's): its requests are read inside Serve too, through
		// the wrapper.
		cn.sc = sockio.Under(c)
	}
	cn.cr.cn = cn
	cn.rd = h1.NewReader(&cn.cr, s.cfg.Limits)
	return cn
}

// setPeer records the peer's address. It runs on the connection's own
// goroutine, not the accept loop: behind a listener wrapper such as the
// PROXY protocol's, RemoteAddr waits for the client's first bytes.
func (cn *conn) setPeer() {
	switch a := cn.c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		cn.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UnixAddr, nil:
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			cn.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
}

// closeIfIdle ends a connection waiting for its next request (or, with
// force, for its first): its read fails at once. Called with s.mu held.
func (cn *conn) closeIfIdle(force bool) {
	switch cn.state.Load() {
	case stateIdle:
		cn.c.SetReadDeadline(aLongTimeAgo)
	case stateNew:
		if force {
			cn.c.SetReadDeadline(aLongTimeAgo)
		}
	}
	// cn.cr still says which deadline it armed: its next armIdle may
	// keep this one, which is what Shutdown wants.
}

func (cn *conn) serve() {
	defer cn.s.forget(cn)
	if !cn.handshake() {
		return
	}
	defer cn.close()
	cn.setPeer()
	defer cn.releaseWriter()
	for {
		if cn.sc != nil {
			if !cn.serveTurns() {
				return
			}
		} else if !cn.readRequest() {
			return
		}
		if !cn.serveRequest() {
			return
		}
	}
}

// serveRequest serves the request read; it reports whether the
// connection goes on to the next.
func (cn *conn) serveRequest() bool {
	cn.acquireWriter()
	if !cn.exchange() {
		return false
	}
	if cn.s.shutting.Load() {
		return false
	}
	// An idle keep-alive connection holds no write buffer: it is given
	// back now, or, on a busy connection whose next request may already
	// be here, when the read for it would wait.
	if !cn.keepWriter {
		cn.releaseWriter()
	}
	cn.state.Store(stateIdle)
	cn.s.wentIdle()
	return true
}

// serveTurns reads and serves requests inside one raw read of the
// client's socket (sockio.Conn.Serve), so that the read for the next
// request waits for the poller instead of first trying a socket that is
// empty. A request that needs the connection for more than its head and
// a body already read (a body still to come, a protocol switch) is left
// to the caller: serveTurns reports true with it read. It reports false
// when the connection ends.
func (cn *conn) serveTurns() bool {
	var pending, ended, begun bool
	err := cn.sc.Serve(func() sockio.Turn {
		for {
			if !begun {
				cn.beginRequest()
				begun = true
			}
			err := cn.rd.ReadRequest(&cn.req)
			if errors.Is(err, sockio.ErrWouldBlock) {
				cn.waiting()
				return sockio.Wait
			}
			begun = false
			if err != nil {
				cn.refuse(err)
				ended = true
				return sockio.Leave
			}
			if !cn.servedInTurn() {
				pending = true
				return sockio.Leave
			}
			if !cn.serveRequest() {
				ended = true
				return sockio.Leave
			}
		}
	})
	switch {
	case ended:
		return false
	case pending:
		return true
	}
	// The raw read ended: a read deadline (idle, or a head that stalled),
	// or a close.
	cn.refuse(err)
	return false
}

// servedInTurn reports whether the request just read can be served
// inside a Serve turn: nothing more is to be read from the client for
// it (a body is already buffered whole), and no protocol switch.
func (cn *conn) servedInTurn() bool {
	req := &cn.req
	return !req.Upgrade && !req.ExpectContinue && !req.Chunked &&
		req.ContentLength <= int64(cn.rd.Buffered())
}

// acquireWriter gives the connection a write buffer from the pool for an
// exchange (or an error answer).
func (cn *conn) acquireWriter() {
	if cn.bw == nil {
		cn.bw = bufWriters.Get().(*bufio.Writer)
		if _, ok := cn.c.(io.ReaderFrom); ok {
			cn.bw.Reset(sockReaderFrom{sockWriter{cn}})
		} else {
			cn.bw.Reset(sockWriter{cn})
		}
	}
}

// waiting is told that a read is about to wait (by the connection's
// sockio.Conn, or by serveTurns): if that read is for the next request,
// the write buffer, which the last response left empty, goes back to the
// pool.
func (cn *conn) waiting() {
	if !cn.cr.started {
		cn.releaseWriter()
	}
}

// releaseWriter gives the write buffer back; what it held was flushed
// (or is dropped with a connection that ends).
func (cn *conn) releaseWriter() {
	if cn.bw != nil {
		cn.bw.Reset(nil)
		bufWriters.Put(cn.bw)
		cn.bw = nil
	}
}

// readRequest reads the next request head; it answers a refused head
// itself and reports whether there is a request to serve.
func (cn *conn) readRequest() bool {
	cn.beginRequest()
	err := cn.rd.ReadRequest(&cn.req)
	if err == nil {
		return true
	}
	cn.refuse(err)
	return false
}

// beginRequest readies the connection for the next request head.
func (cn *conn) beginRequest() {
	cn.cr.started = false
	cn.cr.body = false
	if cn.rd.Buffered() > 0 {
		cn.cr.begin() // a pipelined request is already here
	} else {
		cn.cr.armIdle()
	}
}

// refuse answers a request head that could not be read, when there is
// someone to answer.
func (cn *conn) refuse(err error) {
	var he *h1.Error
	switch {
	case errors.As(err, &he):
		cn.s.log.Debug("refused a request", "client", cn.c.RemoteAddr().String(), "status", he.Status, "err", he.Reason)
		cn.answer(he.Status, he.Reason)
	case cn.cr.started && isTimeout(err) && !cn.s.shutting.Load():
		cn.answer(408, "the request head did not arrive in time")
	}
}

// exchange serves one request; it reports whether the connection may carry
// another.
func (cn *conn) exchange() bool {
	req := &cn.req
	if bytes.Equal(req.Method, methodCONNECT) {
		cn.answer(405, "CONNECT is not served here")
		return false
	}
	if !cn.normalizeTarget() {
		cn.answer(400, "the request target is malformed")
		return false
	}
	cn.bd.reset(cn)
	cn.w.reset(cn)
	cn.trailer = cn.trailer[:0]
	cn.x = Exchange{
		Req:    req,
		Body:   &cn.bd,
		Client: cn.peer,
		Peer:   cn.peer,
		TLS:    cn.tls,
		W:      &cn.w,
		ctx:    cn.s.ctx,
		conn:   cn,
	}
	cn.s.cfg.Handler.ServeExchange(&cn.x)
	cn.x = Exchange{}
	if cn.w.hijacked {
		return false
	}
	if !cn.w.finish() {
		return false
	}
	if !req.KeepAlive || cn.w.closeAfter {
		return false
	}
	// A body the handler left unread must be skipped before the next
	// request; a large one is not worth it.
	return cn.bd.discard()
}

var methodCONNECT = []byte("CONNECT")

// normalizeTarget turns an absolute-form target into origin-form, with
// the authority as Host (RFC 9112 §3.2.2), and checks the other forms.
func (cn *conn) normalizeTarget() bool {
	t := cn.req.Target
	switch {
	case len(t) > 0 && t[0] == '/':
		return true
	case len(t) == 1 && t[0] == '*':
		return string(cn.req.Method) == "OPTIONS"
	}
	var rest []byte
	switch {
	case hasPrefixFold(t, "http://"):
		rest = t[len("http://"):]
	case hasPrefixFold(t, "https://"):
		rest = t[len("https://"):]
	default:
		return false
	}
	i := bytes.IndexAny(rest, "/?")
	authority, path := rest, []byte("/")
	if i >= 0 {
		authority = rest[:i]
		if rest[i] == '/' {
			path = rest[i:]
		} else {
			path = append([]byte("/"), rest[i:]...)
		}
	}
	if len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0 {
		return false
	}
	cn.req.Target = path
	cn.req.Header.Set([]byte("Host"), authority)
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// answer writes a short plain-text response of berth's own and marks the
// connection to close: the client's request could not be read whole.
func (cn *conn) answer(status int, reason string) {
	cn.acquireWriter()
	cn.w.reset(cn)
	cn.w.closeAfter = true
	cn.linger = true
	writeText(&cn.w, status, "berth: "+reason+"\n", nil)
	cn.w.finish()
}

// close closes the connection. After an error answer the client may still
// be sending what berth refused: closing at once would reset the
// connection and could destroy the answer in flight, so berth stops
// writing, reads a little more for a short while, and then closes (as
// net/http and nginx do).
func (cn *conn) close() {
	if cn.linger && cn.state.Load() != stateHijacked {
		if cw, ok := cn.c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			cn.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			io.CopyN(io.Discard, cn.c, 256<<10)
		}
	}
	cn.c.Close()
}

// writeText writes a complete plain-text response through w.
func writeText(w ResponseWriter, status int, text string, extra h1.Fields) {
	resp := h1.Response{Status: status, ContentLength: int64(len(text))}
	resp.Header = append(resp.Header,
		h1.Field{Name: hContentType, Value: vTextPlain},
		h1.Field{Name: hCacheControl, Value: vNoStore},
	)
	resp.Header = append(resp.Header, extra...)
	if w.WriteHead(&resp) == nil {
		io.WriteString(w, text)
	}
}

var (
	hContentType  = []byte("Content-Type")
	hCacheControl = []byte("Cache-Control")
	vTextPlain    = []byte("text/plain; charset=utf-8")
	vNoStore      = []byte("no-store")
)

// sockWriter is what a connection's write buffer writes to: each write
// that reaches the socket first keeps the write deadline armed. Arming
// there, not per piece written into the buffer, reads the clock once for
// a response that leaves in one send, however many pieces (head, body,
// flush) it was written in.
type sockWriter struct{ cn *conn }

func (s sockWriter) Write(p []byte) (int, error) {
	s.cn.armWrite()
	return s.cn.c.Write(p)
}

// sockReaderFrom is the sockWriter of a connection that sends files
// itself (sendfile): the write buffer hands such a body to its ReadFrom.
// clientWriter.ReadFrom arms the deadline per piece.
type sockReaderFrom struct{ sockWriter }

func (s sockReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	s.cn.armWrite()
	return s.cn.c.(io.ReaderFrom).ReadFrom(r)
}

// armWrite keeps a write deadline BodyTimeout ahead, re-arming it only when
// half of it has passed (a timer change per write would cost on the hot
// path): a client that stops reading is dropped after between half and
// all of BodyTimeout.
func (cn *conn) armWrite() {
	// time.Until reads only the monotonic clock; time.Now reads both.
	if time.Until(cn.wdl) < cn.s.cfg.BodyTimeout/2 {
		cn.wdl = time.Now().Add(cn.s.cfg.BodyTimeout)
		cn.c.SetWriteDeadline(cn.wdl)
	}
}

// connReader is what the h1.Reader reads the client through: it moves the
// connection from new/idle to active on a request's first byte, and keeps
// the read deadlines: IdleTimeout while waiting for a request, HeaderTimeout
// for a head from its first byte, BodyTimeout per read of a body.
//
// A deadline change is a timer change in the runtime, so they are made
// lazily: the idle deadline moves only when it would move by more than
// idleSlack (a busy keep-alive connection re-arms it about once a
// second, not per request), and a head that arrives whole in one read,
// as nearly all do, never needs its own deadline: the header deadline is
// armed when the head takes a second read.
type connReader struct {
	cn      *conn
	started bool // a request's first byte arrived
	body    bool // reading a body
	armed   armed
	rdl     time.Time
}

// armed says which read deadline rdl is.
type armed uint8

const (
	armedUnknown armed = iota // none known: set by someone else, or never
	armedIdle
	armedHead
	armedBody
)

// idleSlack is how early an idle connection may be closed, at most: the
// idle deadline is not moved by less.
func (r *connReader) idleSlack() time.Duration {
	return min(r.cn.s.cfg.IdleTimeout/8, time.Second)
}

func (r *connReader) armIdle() {
	idle := r.cn.s.cfg.IdleTimeout
	if r.armed == armedIdle && time.Until(r.rdl) > idle-r.idleSlack() {
		return
	}
	r.arm(armedIdle, time.Now().Add(idle))
}

func (r *connReader) arm(a armed, t time.Time) {
	r.armed, r.rdl = a, t
	r.cn.c.SetReadDeadline(t)
}

// begin marks a request's first byte.
func (r *connReader) begin() {
	r.started = true
	r.cn.state.Store(stateActive)
}

func (r *connReader) Read(p []byte) (int, error) {
	switch {
	case r.body:
		if r.armed != armedBody || time.Until(r.rdl) < r.cn.s.cfg.BodyTimeout/2 {
			r.arm(armedBody, time.Now().Add(r.cn.s.cfg.BodyTimeout))
		}
	case r.started && r.armed != armedHead:
		// The head did not come whole with its first bytes: the rest
		// must arrive within HeaderTimeout.
		r.arm(armedHead, time.Now().Add(r.cn.s.cfg.HeaderTimeout))
	}
	n, err := r.cn.c.Read(p)
	if n > 0 && !r.started {
		r.begin()
	}
	return n, err
}

// requestBody is the Exchange's Body: the request's body through the h1
// reader, with the body read deadline, and "100 Continue" sent to a client
// that waits for it when the body is first read (as nginx does: the app
// never sees the Expect field).
type requestBody struct {
	cn       *conn
	b        *h1.Body
	none     bool
	sent100  bool
	consumed bool // read to its end
	err      error
}

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

func (rb *requestBody) reset(cn *conn) {
	*rb = requestBody{cn: cn}
	req := &cn.req
	if req.ContentLength == 0 && !req.Chunked {
		rb.none, rb.consumed = true, true
		return
	}
	rb.b = cn.rd.Body(req.ContentLength, req.Chunked)
}

func (rb *requestBody) Read(p []byte) (int, error) {
	if rb.none {
		return 0, io.EOF
	}
	if rb.err != nil {
		return 0, rb.err
	}
	if rb.cn.req.ExpectContinue && !rb.sent100 {
		rb.sent100 = true
		if rb.cn.rd.Buffered() == 0 {
			rb.cn.bw.Write(continue100)
			if err := rb.cn.bw.Flush(); err != nil {
				rb.err = err
				return 0, err
			}
		}
	}
	rb.cn.cr.body = true
	n, err := rb.b.Read(p)
	rb.cn.cr.body = false
	if err == io.EOF {
		rb.consumed = true
	} else if err != nil {
		rb.err = err
	}
	return n, err
}

// discard skips what is left of the body so the connection can carry the
// next request; it reports false (close the connection) for a body that
// is large, failed, or was never asked for by a client waiting on 100.
func (rb *requestBody) discard() bool {
	if rb.consumed {
		return true
	}
	if rb.err != nil || (rb.cn.req.ExpectContinue && !rb.sent100) {
		return false
	}
	if rb.cn.req.ContentLength < 0 || rb.cn.req.ContentLength > 256<<10 {
		return false
	}
	_, err := io.Copy(io.Discard, rb)
	return err == nil
}

// clientWriter is the front door's ResponseWriter: it frames the body for
// the client and decides whether the connection stays open.
type clientWriter struct {
	cn         *conn
	wroteHead  bool
	hijacked   bool
	broken     bool  // the response was cut short: no proper end may be written
	noBody     bool  // HEAD, 204, 304: body bytes are dropped
	chunked    bool  // body in chunked coding to the client
	remain     int64 // Content-Length left to write; -1 when not framed by length
	closeAfter bool  // the connection ends after this response
	status     int
	written    int64
	cw         h1.ChunkedWriter
	scratch    [32]byte
}

func (w *clientWriter) reset(cn *conn) {
	*w = clientWriter{cn: cn, remain: -1}
}

// Status is the final status written, 0 before WriteHead.
func (w *clientWriter) Status() int { return w.status }

// Written is the number of body bytes written to the client.
func (w *clientWriter) Written() int64 { return w.written }

var (
	hConnection    = []byte("Connection")
	hContentLength = []byte("Content-Length")
	vClose         = []byte("close")
	vKeepAlive     = []byte("keep-alive")
	vChunked       = []byte("chunked")
)

func (w *clientWriter) WriteHead(resp *h1.Response) error {
	if w.wroteHead {
		return errors.New("balancer: response head written twice")
	}
	cn := w.cn
	req := &cn.req
	bw := cn.bw
	interim := resp.Status/100 == 1 && resp.Status != 101
	if !interim {
		w.wroteHead = true
		w.status = resp.Status
		switch {
		case resp.Status == 101:
		case bytes.Equal(req.Method, methodHEAD) || h1.NoBody(resp.Status):
			w.noBody = true
		case resp.ContentLength >= 0:
			w.remain = resp.ContentLength
		case req.Minor >= 1:
			w.chunked = true
		default:
			w.closeAfter = true // an HTTP/1.0 client learns the end by the close
		}
		if !req.KeepAlive || cn.s.shutting.Load() {
			w.closeAfter = true
		}
	} else if req.Minor == 0 {
		return nil // HTTP/1.0 clients get no interim responses
	}
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(w.scratch[:0], int64(resp.Status), 10))
	bw.WriteByte(' ')
	if len(resp.Reason) > 0 {
		bw.Write(resp.Reason)
	} else {
		bw.WriteString(statusText(resp.Status))
	}
	bw.WriteString("\r\n")
	conns := resp.Header.Has("Connection")
	for _, f := range resp.Header {
		if skipResponseField(f.Name, resp, resp.Status == 101, conns) {
			continue
		}
		bw.Write(f.Name)
		bw.WriteString(": ")
		bw.Write(f.Value)
		bw.WriteString("\r\n")
	}
	switch {
	case resp.Status == 101:
		bw.WriteString("\r\n")
		return bw.Flush()
	case interim:
		bw.WriteString("\r\n")
		return bw.Flush()
	case w.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		w.cw.Reset(bw)
	case resp.ContentLength >= 0 && (resp.Status >= 200 && resp.Status != 204 && resp.Status != 304 || bytes.Equal(req.Method, methodHEAD)):
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.scratch[:0], resp.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	} else if req.Minor == 0 {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

var methodHEAD = []byte("HEAD")

// skipResponseField reports whether a field is one the front door writes
// itself or that belongs to the worker's connection; conns says whether
// resp has a Connection field that may name more (most have none, and
// then no field needs looking up in it).
func skipResponseField(name []byte, resp *h1.Response, upgrade, conns bool) bool {
	switch {
	case h1.EqualFold(name, "Connection"), h1.EqualFold(name, "Upgrade"):
		return !upgrade
	case h1.EqualFold(name, "Content-Length"), h1.EqualFold(name, "Transfer-Encoding"),
		h1.EqualFold(name, "Keep-Alive"), h1.EqualFold(name, "TE"), h1.EqualFold(name, "Proxy-Connection"):
		return true
	}
	return !upgrade && conns && connectionNames(resp.Header, name)
}

// connectionNames reports whether name is listed in a Connection field
// (other than the standard close and keep-alive options).
func connectionNames(fs h1.Fields, name []byte) bool {
	return !isStandardConnectionToken(name) && fs.HasToken("Connection", string(name))
}

func isStandardConnectionToken(name []byte) bool {
	return h1.EqualFold(name, "close") || h1.EqualFold(name, "keep-alive")
}

func (w *clientWriter) Write(p []byte) (int, error) {
	if !w.wroteHead {
		return 0, errors.New("balancer: body written before the head")
	}
	if w.noBody {
		return len(p), nil
	}
	var n int
	var err error
	switch {
	case w.chunked:
		n, err = w.cw.Write(p)
	case w.remain >= 0:
		if int64(len(p)) > w.remain {
			p = p[:w.remain]
			err = errors.New("balancer: response body longer than its Content-Length")
		}
		var werr error
		n, werr = w.cn.bw.Write(p)
		w.remain -= int64(n)
		if werr != nil {
			err = werr
		}
	default:
		n, err = w.cn.bw.Write(p)
	}
	w.written += int64(n)
	if err != nil {
		err = fmt.Errorf("%w: %w", errClientWrite, err)
	}
	return n, err
}

// sendChunk is how much of a body ReadFrom hands the kernel at once: the
// write deadline is re-armed between chunks, so a client must take
// sendChunk bytes per BodyTimeout (about 1 KB/s with the defaults).
const sendChunk = 64 << 10

// ReadFrom sends r as the body. A body framed by Content-Length that
// comes from a file (an *os.File, or an *io.LimitedReader over one) goes
// out by sendfile(2) on a TCP connection: what fits in the write buffer
// with the head is copied there (one write for a small file), the rest
// is handed to the kernel in sendChunk pieces. Other bodies are copied.
func (w *clientWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHead {
		return 0, errors.New("balancer: body written before the head")
	}
	if w.noBody || w.chunked || w.remain < 0 {
		return io.Copy(writerOnly{w}, r)
	}
	// Unwrap one LimitedReader: the kernel's sendfile path takes only one.
	src, limit := r, int64(-1)
	if lr, ok := r.(*io.LimitedReader); ok {
		src, limit = lr.R, lr.N
		defer func() { lr.N = limit }()
	}
	var total int64
	chunk := io.LimitedReader{R: src}
	for w.remain > 0 && limit != 0 {
		chunk.N = min(w.remain, sendChunk)
		if limit > 0 {
			chunk.N = min(chunk.N, limit)
		}
		want := chunk.N
		w.cn.wdl = time.Now().Add(w.cn.s.cfg.BodyTimeout)
		w.cn.c.SetWriteDeadline(w.cn.wdl)
		n, err := w.cn.bw.ReadFrom(&chunk)
		total += n
		w.remain -= n
		w.written += n
		if limit > 0 {
			limit -= n
		}
		if err != nil {
			return total, fmt.Errorf("%w: %w", errClientWrite, err)
		}
		if n < want {
			return total, nil // r ended
		}
	}
	if w.remain == 0 && limit != 0 {
		// More than Content-Length? Say so, as Write does.
		var one [1]byte
		if n, _ := src.Read(one[:]); n > 0 {
			return total, errors.New("balancer: response body longer than its Content-Length")
		}
	}
	return total, nil
}

// writerOnly hides a ReadFrom method from io.Copy.
type writerOnly struct{ io.Writer }

func (w *clientWriter) Flush() error {
	if err := w.cn.bw.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errClientWrite, err)
	}
	return nil
}

// finish ends the response after the chain returned: it answers 500 if
// nothing was written, closes chunked coding, and flushes. It reports
// whether the response went out whole (else the connection must close).
func (w *clientWriter) finish() bool {
	if !w.wroteHead {
		w.closeAfter = true
		writeText(w, 500, "berth: the request was not answered\n", nil)
	}
	ok := true
	switch {
	case w.broken:
		ok = false
	case w.chunked:
		if err := w.cw.Close(w.cn.trailer); err != nil {
			ok = false
		}
	case w.remain > 0:
		ok = false // the body was cut short: only a close tells the client
	}
	if err := w.Flush(); err != nil {
		return false
	}
	return ok && !w.closeAfter
}

// hijack hands the client connection to the caller (a protocol switch):
// the front door forgets it. Bytes the client sent after the request head
// are returned too.
func (cn *conn) hijack() (net.Conn, []byte, error) {
	cn.w.hijacked = true
	cn.state.Store(stateHijacked)
	if err := cn.bw.Flush(); err != nil {
		return nil, nil, err
	}
	cn.c.SetDeadline(time.Time{})
	rest := make([]byte, cn.rd.Buffered())
	if len(rest) > 0 {
		if _, err := io.ReadFull(cn.rd.Body(-1, false), rest); err != nil {
			return nil, nil, err
		}
	}
	// The new protocol's bytes are copied by whoever took the
	// connection, with splice where the kernel can.
	return sockio.Detach(cn.c), rest, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
