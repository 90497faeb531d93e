// Package balancer is berth's HTTP side: a pool of ready workers, the
// least-busy selection policy, a bounded queue for requests that arrive
// while no worker is ready, and a reverse proxy that carries each request to
// a worker's Unix socket (or loopback port), WebSockets included.
//
// It sees a worker only as an address that is ready, with a load; it never
// starts processes. The caller adds and removes Upstreams as the spawner
// reports workers ready and gone.
package balancer
