// Package h1 reads and writes HTTP/1.x messages on the wire for berth's
// forwarding engine, strictly by RFC 9112, without header maps: a parsed
// message's method, target and fields are slices of the buffer it was read
// into, valid until the next message is read on the same Reader.
//
// It owns framing (where a message and its body end), the limits a peer's
// head must fit in, chunked coding, and writing heads back. It knows
// nothing about workers, pools or caches.
//
// What it refuses, and with which status, follows RFC 9112 §6 and what
// request smuggling has taught every proxy: a request with both
// Content-Length and Transfer-Encoding, differing Content-Lengths, a
// Transfer-Encoding that does not end in chunked, bare LF line ends,
// obsolete line folding, or a head over its limit, is answered with an
// *Error and the connection is closed.
package h1
