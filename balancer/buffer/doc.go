// Package buffer is the handler-chain link that keeps slow clients from
// holding a worker.
//
// Requests: a request body is read whole before the rest of the chain
// (and so the proxy, which picks a worker) sees the request: into memory
// up to Config.MemoryBytes, then into an unlinked temporary file in
// Config.Dir. The app gets it with a Content-Length, at the speed of a
// local socket. A client that uploads slowly is never in flight at a
// worker until its body is complete. Protocol switches (Upgrade) and
// paths under Config.StreamPaths pass through unbuffered. The body's size
// is bounded by the limits link before this one (--max-body-size).
//
// Responses: a response with a Content-Length over PassBelow is taken
// from the worker as fast as it sends, into memory up to MemoryBytes and
// then a temporary file up to MaxFileBytes, and only then sent to the
// client. Chunked and close-delimited responses (server-sent events,
// streams) pass through as they come, and so do responses under
// PassBelow (the socket's send buffer takes them without waiting), HEAD
// answers and paths under StreamPaths. A response past MaxFileBytes
// passes through from there on: what was held goes out first, and the
// worker then waits on the client as it would without this link.
//
// Failure to hold: when no temporary file can be made or written (a full
// disk, a missing directory), the body passes through from there on, as
// one past MaxFileBytes does: what is held goes first, then the rest, each
// byte once. An upload then reaches the app as the client sends it rather
// than being refused. A warning names Config.Dir and the error, at most
// once per WarnEvery.
//
// Ownership: nothing here runs in the background. The link wraps the
// ResponseWriter for the rest of the chain; the proxy writes into the
// wrapper, releases its worker (and the worker connection) when its
// ServeExchange returns, and only then does this link, still inside the
// front door's call of ServeExchange, send what it holds to the client
// through the front door's own writer. The front door thus keeps sole
// ownership of the client connection, its deadlines and its drain on
// Shutdown (an exchange in progress is waited for, as any other); the
// worker is free while the client drains. A held body in a file goes out
// by sendfile(2) through the front door's writer.
//
// The held response head is copied: its fields point into the worker
// connection's read buffer, which the next request on that connection
// reuses.
package buffer
