// Package loader holds berth's Node.js loader, loader.cjs, embedded in the
// berth binary.
//
// berth writes it to a file a worker can read (WriteTo) and starts each Node
// worker as
//
//	node [NODE_ARGS…] --require /run/berth/berth-loader.cjs STARTUP_FILE
//
// with the worker contract of DESIGN.md ("Worker contract"): the listening
// socket as fd 3 (LISTEN_FDS=1, LISTEN_PID), BERTH_READY_SOCKET. The loader
// makes the app's first server (or the one it selects with listen('berth'))
// listen on fd 3, reports "READY=1" on BERTH_READY_SOCKET and keeps that
// connection for heartbeats ("WATCHDOG=1" every 500 ms while the event loop
// turns) and out-of-band work ("OOB=1" from berth, answered by
// "OOB_DONE=1"), and drains the server on SIGTERM. README.md beside this file is the user-facing
// description.
package loader
