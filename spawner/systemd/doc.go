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
// `systemd-run --socket-property=…` does) and lives as long as berth: a
// worker restart (a crash, or a rolling restart, which restarts the service
// unit) keeps it, so requests wait in its backlog instead of failing. Unit
// names and properties come from package units.
//
// A worker is one invocation of its service. Its exit is seen at once, from
// the PropertiesChanged signals systemd sends for the service (ActiveState,
// MainPID, ExecMainStatus) on a connection of the back end's own; job
// results come from JobRemoved signals on that same connection, so that a
// job's result and the unit state it left arrive in order. Nothing polls.
//
// Readiness: the worker reports READY=1 on a stream socket
// (BERTH_READY_SOCKET, the Node loader) or an sd_notify datagram socket
// (NOTIFY_SOCKET) that berth listens on for the whole life of the worker
// name, owned by the worker's user; berth takes the sender's pid from the
// kernel (SO_PEERCRED, SCM_CREDENTIALS) and accepts it only from the
// service's main process or another live process of the service's control
// group. See "systemd back end" in DESIGN.md.
//
// Units that a crashed berth left under a worker's names are stopped and
// waited out before the units are made anew.
package systemd
