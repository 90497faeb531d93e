package balancer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"berth/balancer/h1"
	"berth/balancer/loop"
	"berth/balancer/sockio"
	"berth/balancer/trust"
)

// ProxyConfig configures a Proxy. Pool is required.
type ProxyConfig struct {
	// Pool supplies the workers.
	Pool *Pool
	// App names the application in error pages.
	App string
	// Attempts is how many workers a request may try when a worker
	// refuses the connection (not one byte of the request reached the
	// app). If zero, 3.
	Attempts int
	// Trusted lists the proxies in front of berth whose forwarding
	// fields (X-Forwarded-For/-Proto/-Host, Forwarded) are kept and
	// extended; every other peer's are replaced, never extended. The zero
	// value trusts loopback and Unix-socket peers.
	Trusted trust.List
	// Log receives one line per failed request. If nil, nothing is logged.
	Log *slog.Logger

	// MaxRequestTime bounds how long a worker may take to begin its
	// answer, and then to send each further part of it; past it the
	// request gets 504 and OnTimeout is called. Zero means no limit.
	// Protocol switches (WebSockets) are not bound by it.
	MaxRequestTime time.Duration
	// OnTimeout, if not nil, is told of a worker that passed
	// MaxRequestTime (the caller may recycle it if it is still blocked).
	OnTimeout func(up *Upstream)
	// OnOOB, if not nil, is told of a worker whose response asked for
	// out-of-band work (X-Berth-OOB-Work or Passenger's
	// X-Passenger-Request-OOB-Work: true); the field is not passed on.
	OnOOB func(up *Upstream)
	// Explain, if not nil, says why no worker is ready when a request
	// gave up waiting in the queue ("worker w1 has run for 12s and has
	// not called listen() yet; spawn timeout 1m0s"); it must be fit for
	// any visitor.
	Explain func() string
	// StickyCookie, if not empty, turns on sticky sessions: a response
	// carries a cookie of that name naming its worker, and a request
	// carrying it goes to that worker while it is in service.
	StickyCookie string
}

// Proxy is the last link of the handler chain: it carries each request to
// the least-busy worker over that worker's keep-alive connections, and
// streams the response back.
//
// A request that was written to a worker is never sent to another one:
// the app may have acted on it (and a request that crashes its worker
// would crash them all). Only a refused connection, or a reused one the
// worker had closed before a byte was written, moves it on.
type Proxy struct {
	cfg ProxyConfig
	log *slog.Logger

	mu      sync.Mutex // protects cookies
	cookies map[*Upstream][]byte
}

// NewProxy returns a Proxy.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Pool == nil {
		return nil, errors.New("balancer: ProxyConfig.Pool is nil")
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 3
	}
	p := &Proxy{cfg: cfg, log: cfg.Log, cookies: map[*Upstream][]byte{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// outcome is how one try of a request against one worker ended.
type outcome int

const (
	done  outcome = iota // answered (well or with an error page)
	retry                // nothing reached the worker: try another
	again                // the worker never read it: try it again, afresh
)

// ServeExchange implements Handler.
func (p *Proxy) ServeExchange(x *Exchange) {
	var triedBuf [4]*Upstream
	tried := triedBuf[:0]
	var sticky []byte
	if p.cfg.StickyCookie != "" {
		sticky = cookieValue(x.Req.Header, p.cfg.StickyCookie)
	}
	for i := 1; ; i++ {
		// A worker free at once is the common case: the clock is read
		// only for a request that waits in the queue.
		up, _, _ := p.cfg.Pool.pick(sticky, tried)
		var err error
		if up == nil && x.NoQueue {
			err = ErrNoWorker
		} else if up == nil {
			t0 := time.Now()
			x.Detach()
			up, err = p.cfg.Pool.AcquirePreferring(x.Context(), sticky, tried)
			x.Attach()
			x.QueueWait += time.Since(t0)
		}
		if err != nil {
			p.unavailable(x, err, tried)
			return
		}
		x.Worker = up
		res := p.forward(x, up, i >= p.cfg.Attempts, sticky)
		p.cfg.Pool.Release(up)
		switch res {
		case done:
			return
		case retry:
			tried = append(tried, up)
		}
	}
}

// forward carries x to up and its answer back.
func (p *Proxy) forward(x *Exchange, up *Upstream, lastTry bool, sticky []byte) outcome {
	uc, err := up.getConn(x.Context(), x.task())
	if err != nil {
		if !lastTry {
			p.log.Warn("worker refused a connection; trying another", "worker", up.Name, "err", err)
			return retry
		}
		p.fail(x, up, 502, fmt.Sprintf("worker %s refused the connection and no other worker could take the request.", up.Name), err)
		return done
	}
	x.setUpstream(uc)
	defer x.setUpstream(nil)
	reused := uc.reuse
	uc.cw.sent = 0
	uc.got = 0

	req := x.Req
	writeRequestHead(uc, x, p.cfg.Trusted.Trusts(x.Peer))
	hasBody := req.ContentLength != 0
	if hasBody {
		// The head goes first on its own: if the worker's connection
		// turns out dead, nothing of the client's body is lost yet and
		// the request can move on.
		err = uc.bw.Flush()
	}
	if err == nil && hasBody {
		err = p.writeBody(uc, x)
		if uc.body.err != nil {
			// The client's fault: a malformed chunked body, a body that
			// stopped coming. The worker saw half a request.
			uc.c.Close()
			clientBodyError(x, uc.body.err)
			return done
		}
	}
	// The answer's deadline runs from here.
	if p.cfg.MaxRequestTime > 0 {
		uc.limit = p.cfg.MaxRequestTime
		uc.arm()
	}
	if err == nil {
		err = uc.send()
	}
	if err != nil {
		uc.c.Close()
		if uc.cw.sent == 0 && reused && isGoneError(err) {
			up.dropIdle()
			if !lastTry {
				p.log.Debug("worker closed an idle connection; trying another", "worker", up.Name, "err", err)
				return retry
			}
		}
		p.fail(x, up, 502, p.diedText(up), err)
		return done
	}

	// The answer: interim responses pass through, then the final one.
	resp := &uc.resp
	for {
		if err = uc.rd.ReadResponse(resp); err != nil {
			uc.c.Close()
			up.dropIdle()
			var he *h1.Error
			if unread(up, uc, req, err) && !lastTry {
				p.log.Debug("worker closed a connection without reading the request; trying again", "worker", up.Name, "err", err)
				return again
			}
			if x.loc != nil && errors.Is(x.ctx.Err(), context.DeadlineExceeded) {
				// Do's deadline passed and closed the connection.
				p.fail(x, up, 504, fmt.Sprintf("worker %s did not answer before the request's deadline.", up.Name), x.ctx.Err())
			} else if isTimeout(err) && uc.limit > 0 {
				p.timedOut(x, up)
			} else if errors.As(err, &he) {
				p.fail(x, up, 502, fmt.Sprintf("worker %s sent a malformed response.", up.Name), err)
			} else {
				p.fail(x, up, 502, p.diedText(up), err)
			}
			return done
		}
		if resp.Status/100 != 1 || resp.Status == 101 {
			break
		}
		if resp.Status == 100 {
			continue // berth answered the client's Expect itself
		}
		x.W.WriteHead(resp) // 103 Early Hints and the like
	}
	if resp.Status == 101 {
		if !req.Upgrade || x.conn == nil {
			uc.c.Close()
			p.fail(x, up, 502, fmt.Sprintf("worker %s switched protocols unasked.", up.Name), nil)
			return done
		}
		uc.limit = 0
		uc.c.SetReadDeadline(time.Time{})
		p.tunnel(x, uc)
		return done
	}
	if p.cfg.OnOOB != nil && wantsOOB(resp) {
		resp.Header.Del("X-Berth-OOB-Work")
		resp.Header.Del("X-Passenger-Request-OOB-Work")
		p.cfg.OnOOB(up)
	}
	if p.cfg.StickyCookie != "" && string(sticky) != up.Name {
		resp.Header.Add(hSetCookie, p.stickyCookie(up))
	}

	var n int64
	chunked := false
	switch {
	case string(req.Method) == "HEAD" || h1.NoBody(resp.Status):
		n = 0
	case resp.Chunked:
		n, chunked = -1, true
	default:
		n = resp.ContentLength
	}
	if err := x.W.WriteHead(resp); err != nil {
		uc.c.Close()
		x.closeAfter()
		return done
	}
	if n == 0 {
		p.reuse(uc, resp)
		return done
	}
	body := uc.rd.Body(n, chunked)
	_, err = body.CopyTo(x.W, x.W.Flush)
	if err != nil || !body.Done() {
		// Either side failed mid-body: the client's response is cut
		// short, and only closing its connection says so.
		uc.c.Close()
		x.cutShort()
		if isTimeout(err) && uc.limit > 0 {
			p.log.Warn("worker stalled mid-response past the maximum request time", "worker", up.Name, "max_request_time", uc.limit.String())
			if p.cfg.OnTimeout != nil {
				p.cfg.OnTimeout(up)
			}
		} else if err != nil && !errors.Is(err, errClientWrite) {
			p.log.Warn("worker failed while sending a response", "worker", up.Name, "method", string(req.Method), "path", string(req.Path()), "err", err)
		}
		return done
	}
	if chunked {
		if tr := body.Trailer(); len(tr) > 0 {
			x.setTrailer(tr)
		}
	}
	if bc, ok := x.W.(BodyCompleter); ok {
		bc.BodyComplete()
	}
	p.reuse(uc, resp)
	return done
}

// reuse puts a connection whose exchange ended cleanly back in its pool.
func (p *Proxy) reuse(uc *upConn, resp *h1.Response) {
	if uc.limit > 0 {
		uc.limit = 0
		uc.c.SetReadDeadline(time.Time{})
	}
	if resp.KeepAlive {
		uc.up.putConn(uc)
	} else {
		uc.c.Close()
	}
}

func (p *Proxy) diedText(up *Upstream) string {
	return fmt.Sprintf("worker %s failed while handling the request (it closed the connection, or exited). The request was not retried because the app may have acted on it.", up.Name)
}

// unread reports that a request provably never reached the app: the
// worker's end of a Unix socket was closed with the request still unread
// in it (the kernel reports ECONNRESET only then; a worker that read the
// request and died gives EOF). That happens when a worker told to stop
// closes a keep-alive connection it saw as idle just as berth's request
// arrived. Requests with a body are not judged this way: the app may
// have read part of it.
func unread(up *Upstream, uc *upConn, req *h1.Request, err error) bool {
	return up.Network == "unix" && uc.got == 0 && req.ContentLength == 0 && errors.Is(err, syscall.ECONNRESET)
}

// timedOut answers a request whose worker did not begin its answer within
// MaxRequestTime.
func (p *Proxy) timedOut(x *Exchange, up *Upstream) {
	p.fail(x, up, 504, fmt.Sprintf("worker %s did not answer within the maximum request time (%s).", up.Name, p.cfg.MaxRequestTime), nil)
	if p.cfg.OnTimeout != nil {
		p.cfg.OnTimeout(up)
	}
}

var hSetCookie = []byte("Set-Cookie")

// stickyCookie is the Set-Cookie value that sends a client back to up.
func (p *Proxy) stickyCookie(up *Upstream) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.cookies[up]
	if !ok {
		for k := range p.cookies { // workers come and go: keep the map small
			if len(p.cookies) < 64 {
				break
			}
			delete(p.cookies, k)
		}
		c = []byte(p.cfg.StickyCookie + "=" + up.Name + "; Path=/; HttpOnly; SameSite=Lax")
		p.cookies[up] = c
	}
	return c
}

// cookieValue returns the value of the cookie named name in the request's
// Cookie fields, or nil.
func cookieValue(fs h1.Fields, name string) []byte {
	for _, f := range fs {
		if !h1.EqualFold(f.Name, "Cookie") {
			continue
		}
		v := f.Value
		for len(v) > 0 {
			var pair []byte
			pair, v = h1.NextItem(v, ';')
			pair = bytes.TrimLeft(pair, " \t")
			if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
				return bytes.TrimRight(pair[len(name)+1:], " \t")
			}
		}
	}
	return nil
}

// wantsOOB reports whether the app asked for out-of-band work.
func wantsOOB(resp *h1.Response) bool {
	return resp.Header.Has("X-Berth-OOB-Work") || h1.EqualFold(resp.Header.Get("X-Passenger-Request-OOB-Work"), "true")
}

// writeBody copies the client's body to the worker, in its own framing:
// Content-Length as it came, chunked re-coded with its trailer.
func (p *Proxy) writeBody(uc *upConn, x *Exchange) error {
	uc.body = errReader{r: x.Body}
	if x.Req.ContentLength >= 0 {
		_, err := uc.bw.ReadFrom(&uc.body)
		return err
	}
	uc.chunk.Reset(uc.bw)
	if _, err := io.Copy(&uc.chunk, &uc.body); err != nil {
		return err
	}
	var tr h1.Fields
	if rb, ok := x.Body.(*requestBody); ok && rb.b != nil {
		tr = rb.b.Trailer()
	}
	return uc.chunk.Close(tr)
}

// clientBodyError answers a request whose body could not be read.
func clientBodyError(x *Exchange, err error) {
	x.refused()
	var he *h1.Error
	switch {
	case errors.As(err, &he):
		writeText(x.W, he.Status, "berth: "+he.Reason+"\n", nil)
	case errors.Is(err, h1.ErrBodyTooLarge):
		writeText(x.W, 413, "berth: the request body is larger than this server accepts.\n", nil)
	case isTimeout(err):
		writeText(x.W, 408, "berth: the request body did not arrive in time.\n", nil)
	}
	// Otherwise the client is gone: nobody is left to answer.
}

// fail answers a request that failed at a worker, unless the response
// had begun (then the connection is closed to say so).
func (p *Proxy) fail(x *Exchange, up *Upstream, status int, text string, err error) {
	p.log.Warn("request failed", "worker", up.Name, "method", string(x.Req.Method), "path", string(x.Req.Path()), "status", status, "err", err)
	if x.headWritten() {
		x.cutShort()
		return
	}
	writeText(x.W, status, "berth: app "+p.cfg.App+": "+text+"\n", nil)
}

// unavailable answers a request no worker could take.
func (p *Proxy) unavailable(x *Exchange, err error, tried []*Upstream) {
	if x.Context().Err() != nil {
		x.closeAfter()
		return
	}
	var ue *UnavailableError
	var msg string
	switch {
	case len(tried) > 0:
		writeText(x.W, 502, fmt.Sprintf("berth: app %s: every worker refused the connection (%d tried).\n", p.cfg.App, len(tried)), nil)
		return
	case errors.As(err, &ue):
		msg = fmt.Sprintf("berth: app %s is unavailable: %s\n", p.cfg.App, ue.Reason)
	case errors.Is(err, ErrQueueFull):
		msg = fmt.Sprintf("berth: app %s is overloaded: the request queue is full. Try again shortly.\n", p.cfg.App)
	case p.cfg.Explain != nil && p.cfg.Explain() != "":
		msg = fmt.Sprintf("berth: app %s has no worker ready: %s.\n", p.cfg.App, p.cfg.Explain())
	default:
		msg = fmt.Sprintf("berth: app %s has no worker ready (%v). It may still be starting.\n", p.cfg.App, err)
	}
	writeText(x.W, 503, msg, retryAfter)
}

var retryAfter = h1.Fields{{Name: []byte("Retry-After"), Value: []byte("1")}}

// isGoneError reports an error that means the worker's end was closed
// before the write: the request did not reach it.
func isGoneError(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

func copyFields(dst, src h1.Fields) h1.Fields {
	for _, f := range src {
		dst = append(dst, h1.Field{Name: append([]byte(nil), f.Name...), Value: append([]byte(nil), f.Value...)})
	}
	return dst
}

// hopByHop reports whether a request field is one berth does not forward:
// it belongs to the client's connection, berth writes it itself, or it
// was consumed here (Expect).
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return h1.EqualFold(name, "TE")
	case 6:
		return h1.EqualFold(name, "Expect")
	case 7:
		return h1.EqualFold(name, "Upgrade") || h1.EqualFold(name, "Trailer")
	case 9:
		return h1.EqualFold(name, "Forwarded")
	case 10:
		return h1.EqualFold(name, "Connection") || h1.EqualFold(name, "Keep-Alive")
	case 14:
		return h1.EqualFold(name, "Content-Length")
	case 15:
		return h1.EqualFold(name, "X-Forwarded-For")
	case 16:
		return h1.EqualFold(name, "Proxy-Connection") || h1.EqualFold(name, "X-Forwarded-Host")
	case 17:
		return h1.EqualFold(name, "Transfer-Encoding") || h1.EqualFold(name, "X-Forwarded-Proto")
	}
	return false
}

// writeRequestHead writes the request head for the worker: the client's
// fields less hop-by-hop ones, the forwarding fields, and berth's own
// framing. A trusted peer's forwarding fields are kept and extended with
// what berth saw; anyone else's are replaced.
func writeRequestHead(uc *upConn, x *Exchange, trusted bool) {
	bw, req := uc.bw, x.Req
	host := req.Header.Get("Host")
	bw.Write(req.Method)
	bw.WriteByte(' ')
	bw.Write(req.Target)
	if host == nil && req.Minor == 0 {
		// An HTTP/1.0 request without Host reaches the app without one,
		// which only HTTP/1.0 allows.
		bw.WriteString(" HTTP/1.0\r\nConnection: keep-alive\r\n")
	} else {
		bw.WriteString(" HTTP/1.1\r\n")
	}
	conns := req.Header.Has("Connection")
	for _, f := range req.Header {
		if hopByHop(f.Name) || conns && connectionNames(req.Header, f.Name) {
			continue
		}
		bw.Write(f.Name)
		bw.WriteString(": ")
		bw.Write(f.Value)
		bw.WriteString("\r\n")
	}
	// X-Forwarded-For: a trusted proxy's chain is kept and extended.
	bw.WriteString("X-Forwarded-For: ")
	if trusted {
		for _, f := range req.Header {
			if h1.EqualFold(f.Name, "X-Forwarded-For") {
				bw.Write(f.Value)
				bw.WriteString(", ")
			}
		}
	}
	scratch := uc.scratch[:0]
	if x.Client.IsValid() {
		bw.Write(x.Client.Addr().AppendTo(scratch))
	} else {
		bw.WriteString("unix")
	}
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	if v := req.Header.Get("X-Forwarded-Proto"); trusted && v != nil {
		bw.Write(v)
	} else if x.TLS {
		bw.WriteString("https")
	} else {
		bw.WriteString("http")
	}
	if v := req.Header.Get("X-Forwarded-Host"); trusted && v != nil {
		bw.WriteString("\r\nX-Forwarded-Host: ")
		bw.Write(v)
	} else if host != nil {
		bw.WriteString("\r\nX-Forwarded-Host: ")
		bw.Write(host)
	}
	writeForwarded(bw, x, trusted, host, scratch)
	bw.WriteString("\r\n")
	switch {
	case req.Upgrade:
		bw.WriteString("Connection: upgrade\r\nUpgrade: ")
		bw.Write(req.Header.Get("Upgrade"))
		bw.WriteString("\r\n")
	}
	switch {
	case req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(appendInt(scratch, req.ContentLength))
		bw.WriteString("\r\n")
	case req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

// writeForwarded writes the Forwarded field of RFC 7239: a trusted
// peer's elements, then one for the hop that reached berth.
func writeForwarded(bw *bufio.Writer, x *Exchange, trusted bool, host, scratch []byte) {
	bw.WriteString("\r\nForwarded: ")
	if trusted {
		for _, f := range x.Req.Header {
			if h1.EqualFold(f.Name, "Forwarded") && len(f.Value) > 0 {
				bw.Write(f.Value)
				bw.WriteString(", ")
			}
		}
	}
	bw.WriteString("for=")
	switch {
	case !x.Client.IsValid():
		bw.WriteString("unknown")
	case x.Client.Addr().Is4():
		bw.Write(x.Client.Addr().AppendTo(scratch))
	default:
		bw.WriteString(`"[`)
		bw.Write(x.Client.Addr().AppendTo(scratch))
		bw.WriteString(`]"`)
	}
	if len(host) > 0 && quotable(host) {
		bw.WriteString(`;host="`)
		bw.Write(host)
		bw.WriteByte('"')
	}
	if x.TLS {
		bw.WriteString(";proto=https")
	} else {
		bw.WriteString(";proto=http")
	}
}

// quotable reports whether b can go in a quoted-string as it is.
func quotable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// tunnel joins the client and the worker after a protocol switch
// (WebSocket): bytes flow both ways until either side ends.
func (p *Proxy) tunnel(x *Exchange, uc *upConn) {
	defer uc.c.Close()
	if err := x.W.WriteHead(&uc.resp); err != nil {
		return
	}
	client, rest, err := x.conn.hijack()
	if err != nil {
		return
	}
	// What each side sent after its head is already in berth's buffers.
	if len(rest) > 0 {
		if _, err := uc.c.Write(rest); err != nil {
			return
		}
	}
	if n := uc.rd.Buffered(); n > 0 {
		if _, err := io.CopyN(client, uc.rd.Body(-1, false), int64(n)); err != nil {
			return
		}
	}
	wc := sockio.Detach(uc.c) // both ways at once, spliced
	if t := x.task(); t != nil {
		lc, ok1 := client.(*loop.Conn)
		lw, ok2 := wc.(*loop.Conn)
		if ok1 && ok2 {
			tunnelOnLoop(t, lc, lw)
			return
		}
	}
	x.Detach() // for good: two directions at once
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(wc, client)
		if cw, ok := wc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	io.Copy(client, wc)
	client.Close()
	uc.c.Close()
	<-done
}

// tunnelOnLoop is tunnel's copying on an event loop: the client-to-worker
// direction runs as a second Task of the same loop, so that an idle
// WebSocket holds no goroutine and no thread.
func tunnelOnLoop(t *loop.Task, client, worker *loop.Conn) {
	t.Loop().Go(func(up *loop.Task) {
		client.BindReader(up)
		worker.BindWriter(up)
		io.Copy(worker, client)
		worker.CloseWrite()
	})
	io.Copy(client, worker)
	client.Close()
	worker.Close()
}

var errClientWrite = errors.New("balancer: client write failed")
