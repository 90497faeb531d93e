package balancer

import "berth/balancer/h1"

// What the proxy asks of the connection an Exchange came on. The front
// door's HTTP/1.1 connection (x.conn), an HTTP/2 stream (x.h2) and a
// request berth makes itself (x.loc, see Do) answer these differently: a response cut short closes an HTTP/1.1 connection
// and resets an HTTP/2 stream.

// setUpstream records the worker connection x is using (nil when done),
// so that Close can break a wait on it.
func (x *Exchange) setUpstream(uc *upConn) {
	switch {
	case x.conn != nil:
		x.conn.up.Store(uc)
	case x.h2 != nil:
		x.h2.up.Store(uc)
	case x.loc != nil:
		x.loc.setUpstream(uc)
	}
}

// closeAfter ends the client's connection after this response (HTTP/1.1;
// an HTTP/2 connection carries other streams and stays).
func (x *Exchange) closeAfter() {
	if x.conn != nil {
		x.conn.w.closeAfter = true
	}
}

// cutShort says the response could not be completed: the client must
// not take what it got for the whole answer.
func (x *Exchange) cutShort() {
	switch {
	case x.conn != nil:
		x.conn.w.closeAfter = true
		x.conn.w.broken = true
	case x.h2 != nil:
		x.h2.w.broken = true
	}
}

// refused marks a request whose own bytes were refused (a bad body): an
// HTTP/1.1 connection is closed gently, since the client may still send.
func (x *Exchange) refused() {
	if x.conn != nil {
		x.conn.w.closeAfter = true
		x.conn.linger = true
	}
}

// headWritten reports whether the final response head went out.
func (x *Exchange) headWritten() bool {
	switch {
	case x.conn != nil:
		return x.conn.w.wroteHead
	case x.h2 != nil:
		return x.h2.w.wroteHead
	case x.loc != nil:
		return x.loc.wroteHead
	}
	return false
}

// setTrailer records the trailer sent after a chunked body; tr is
// copied.
func (x *Exchange) setTrailer(tr h1.Fields) {
	switch {
	case x.conn != nil:
		x.conn.trailer = copyFields(x.conn.trailer[:0], tr)
	case x.h2 != nil:
		x.h2.w.trailer = copyFields(x.h2.w.trailer[:0], tr)
	}
}

// Refuse says that the request's body is refused (a link answers without
// reading it): an HTTP/1.1 connection closes after the response, gently,
// since the client may still be sending.
func (x *Exchange) Refuse() { x.refused() }
