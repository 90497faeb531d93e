// Package balancer is berth's HTTP side.
//
// The front door (Server) owns the public listeners and every client
// connection: one goroutine per connection reads HTTP/1.1 requests with
// the strict parser of balancer/h1, hands each to the handler chain, and
// drains on Shutdown without losing a request that reached it. The chain
// is a Handler whose links (response cache, static files, limits,
// metrics; each in its own package) wrap the next one; the last link is
// the Proxy, which carries the request to the least-busy worker of the
// Pool over that worker's own keep-alive connections and streams the
// answer back. The Pool holds the ready workers, the selection policy and
// a bounded queue for requests that arrive while none is ready.
//
// The Admin API (status, restart, …) is served on a Unix socket beside it.
//
// It sees a worker only as an address that is ready, with a load; it never
// starts processes. The caller adds and removes Upstreams as the spawner
// reports workers ready and gone.
package balancer
