// Package spawner owns a worker's life: start, readiness, stop, and
// replacement with backoff. It never sees a request.
//
// A Backend starts one worker from a Spec and returns once the worker is
// ready (or failed). Two back ends implement it: Exec forks the worker
// itself (standalone berth), and the systemd back end runs it as a transient
// unit. Either way the worker finds the same contract (see DESIGN.md in the
// repository): its listening socket as fd 3 with LISTEN_FDS=1 and its own
// LISTEN_PID, and BERTH_READY_SOCKET / NOTIFY_SOCKET to report readiness.
//
// A Supervisor keeps a number of workers running on a Backend. A worker
// that served and exits is replaced at once; one that fails before it is
// ready is started again after a capped exponential backoff, so a crash
// loop costs no CPU. It restarts the workers one by one on request,
// recycles those over --max-requests or --memory-limit, reports starting
// workers, and calls Backend.Release when it gives a worker name up.
//
// Under systemd the same worker is a transient unit pair:
//
//	berth-myapp-w1.socket   ListenStream=/run/berth/myapp/w1.sock
//	berth-myapp-w1.service  node --require loader.cjs app.js   (fd 3 = that socket)
package spawner
