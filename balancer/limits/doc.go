// Package limits bounds what clients may take of berth: a listener
// wrapper for the number of open connections, in all and per client
// address, and a handler-chain link for the size of request bodies.
//
// Listener (MaxConns): when MaxConns connections are open, Accept does
// not call the wrapped listener's Accept until one closes, so further
// connections wait in the kernel's listen backlog (as under systemd's
// socket, during a restart) instead of being accepted and reset. When
// the backlog is full too, the kernel drops new SYNs and clients retry.
//
// Listener (PerIP): a connection from an address that already has PerIP
// open connections is closed at once, without an answer (as a firewall's
// connlimit does): waiting in the backlog would make every other client
// wait behind it.
//
// Body: a request whose body is longer than Max is answered 413 with a
// text naming the limit, without reaching the app; a chunked body is cut
// when it passes Max.
package limits
