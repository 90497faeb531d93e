// Package systemd is the spawner back end that runs each worker as a
// transient systemd unit pair over D-Bus, when berth itself runs under
// systemd:
//
//	berth-myapp.slice
//	├─ berth-myapp-w1.socket   ListenStream=/run/berth/myapp/w1.sock (SocketMode=0600)
//	└─ berth-myapp-w1.service  node --require …/berth-loader.cjs app.js, fd 3 = that socket
//	                           User=<owner of the app dir>, sandboxed, BindsTo=PartOf=Before=myapp.service
//
// The socket unit is made and started together with the service (one
// StartTransientUnit call with the service as auxiliary unit, as
// `systemd-run --socket-property=…` does). A crashed worker's service is
// started again behind the same socket, so requests wait in its backlog
// instead of failing. A start while the name's worker still runs (a
// rolling restart, a recycle) makes the name's next generation of units
// beside the serving pair instead, with a socket and readiness sockets of
// its own:
//
//	berth-myapp-w1-g2.socket   ListenStream=/run/berth/myapp/w1-g2.sock
//	berth-myapp-w1-g2.service  the new release
//
// The old pair is not touched until the new worker is ready; the
// supervisor then takes the old worker out of the balancer (which drains
// it) and stops it, which gives its pair up. A new pair whose worker fails
// to start is stopped and given up while the old worker keeps serving, so
// a broken release cannot take a slot down. Unit names and properties come
// from package units.
//
// A worker is one invocation of its service. Its exit is seen at once, from
// the PropertiesChanged signals systemd sends for the service (ActiveState,
// MainPID, ExecMainStatus) on a connection of the back end's own; job
// results come from JobRemoved signals on that same connection, so that a
// job's result and the unit state it left arrive in order. Nothing polls.
//
// Readiness: the worker reports READY=1 on a stream socket
// (BERTH_READY_SOCKET, the Node loader) or an sd_notify datagram socket
// (NOTIFY_SOCKET) that berth listens on for the whole life of the unit
// pair, owned by the worker's user; berth takes the sender's pid from the
// kernel (SO_PEERCRED, SCM_CREDENTIALS) and accepts it only from the
// service's main process or another live process of the service's control
// group. See "systemd back end" in DESIGN.md.
//
// Units that a crashed berth left under a worker's names, of any
// generation, are stopped before the name's first start; those of the
// first generation are waited out before the units are made anew.
package systemd
