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
//
// The rules where RFC 9112 leaves a choice:
//
//   - One empty line before a request line is skipped (§2.2); a second is
//     400.
//   - A version other than HTTP/1.0 and HTTP/1.1 is 505, the HTTP/2
//     connection preface ("PRI * HTTP/2.0") included; a malformed one is
//     400.
//   - Any second Content-Length, even with the same value, and a list
//     ("5, 5") are 400 (§6.3 (5) allows either this or accepting equal
//     values; nginx refuses too).
//   - A request's Transfer-Encoding must be exactly chunked: chunked not
//     last (or twice) is 400 (§6.3 (4)), another coding before it is 501
//     (§6.1), any Transfer-Encoding in an HTTP/1.0 request is 400.
//     Whitespace around codings is OWS, trimmed: "\tchunked" is chunked.
//   - Field values may hold obs-text (bytes 0x80–0xFF, RFC 9110 §5.5);
//     field names are tokens. Other control bytes than HTAB are 400.
//   - The request-target is checked for its characters (no CTL, SP or
//     DEL; bytes over 0x7F pass, as nginx and Node let them) and its form
//     (§3.2): origin-form, absolute-form, authority-form only for CONNECT
//     and "*" only for OPTIONS. It is not decoded.
//   - A worker's response head that is refused is an *Error with Status
//     502. It may omit the reason phrase and its SP. Transfer-Encoding
//     with Content-Length is framed by Transfer-Encoding, the
//     Content-Length fields are removed and the connection is not reused
//     (§6.3 (3)); Transfer-Encoding in an HTTP/1.0 response is refused.
//   - A chunk-size has at most 15 hex digits; a chunk-size line,
//     extensions included, at most 4 KiB; the trailer section is bounded
//     like a head. Anything malformed in a chunked body is 400.
package h1
