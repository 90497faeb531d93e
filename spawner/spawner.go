package spawner

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Spec describes one worker to start.
type Spec struct {
	// App is the application's name, used in log tags and unit names.
	App string
	// Name is the worker's name within the app: "w1", "w2", ...
	Name string
	// Dir is the working directory (the app root).
	Dir string
	// Argv is the command to run; Argv[0] is looked up on PATH.
	Argv []string
	// Env is added to berth's own environment, KEY=VALUE.
	Env []string
	// PortEnv makes the worker listen on a loopback TCP port that berth
	// picks and passes in $PORT, for apps that cannot take a socket. If
	// false, the worker gets a Unix socket as fd 3.
	PortEnv bool
	// Probe makes readiness also count a worker that answers on its socket
	// (for apps that send no READY=1). The Node loader always reports
	// readiness, so Node workers leave this false.
	Probe bool
	// StopTimeout is how long a worker has to exit after SIGTERM before it
	// is killed. If zero, DefaultStopTimeout is used.
	StopTimeout time.Duration
	// Started, if not nil, is called once the worker's process runs and
	// before it is ready, with its pid and a func that returns the last
	// lines it printed (for a start that takes long: the supervisor
	// reports them).
	Started func(pid int, output func() []string)
}

// DefaultStopTimeout is the grace period between SIGTERM and SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// Worker is a started, ready worker.
type Worker interface {
	// Name is the worker's name ("w1"), whatever the back end.
	Name() string
	// Addr is where the worker takes requests: network "unix" or "tcp" and
	// the address to dial.
	Addr() (network, address string)
	// Pid is the worker's main process id (0 if unknown).
	Pid() int
	// Done is closed when the worker's process has exited.
	Done() <-chan struct{}
	// Err says why the worker exited; valid after Done is closed.
	Err() error
	// Stop asks the worker to exit (SIGTERM), waits, and kills it when its
	// stop timeout or ctx runs out. It returns once the worker is gone. It
	// stops this process only: the worker's name stays usable for another
	// Start until the back end's Release.
	Stop(ctx context.Context) error
	// Usage measures what the worker's processes use now.
	Usage(ctx context.Context) (Usage, error)
}

// Usage is what a worker's processes use.
type Usage struct {
	// Memory is the bytes in use: the control group's MemoryCurrent under
	// systemd, the resident set of the worker's process tree in exec mode.
	Memory uint64
	// CPU is the CPU time (user and system) the processes used.
	CPU time.Duration
}

// Liveness is implemented by workers whose readiness connection stays open
// after READY=1 (the Node loader): the loader writes "WATCHDOG=1\n" every
// 500 ms from a timer of its event loop, so a missing heartbeat means a
// blocked loop; berth writes "OOB=1\n" to ask for out-of-band work, and the
// loader answers "OOB_DONE=1\n".
type Liveness interface {
	// LastHeartbeat is when the worker last reported that its event loop
	// runs (READY=1, then every WATCHDOG=1). It is zero while the worker
	// keeps no readiness connection open (an app without the Node loader
	// closes it, or uses NOTIFY_SOCKET): such a worker is never taken for
	// blocked.
	LastHeartbeat() time.Time
	// OutOfBand asks the worker to run its out-of-band work and returns
	// once it reports done, ctx ends, or its connection closes.
	OutOfBand(ctx context.Context) error
}

// Blocked reports whether w's event loop has sent no heartbeat for longer
// than d at now. A worker without an open readiness connection (or that is
// no Liveness) is not blocked.
func Blocked(w Worker, now time.Time, d time.Duration) bool {
	l, ok := w.(Liveness)
	if !ok {
		return false
	}
	last := l.LastHeartbeat()
	return !last.IsZero() && now.Sub(last) > d
}

// Backend starts workers.
type Backend interface {
	// Start starts a worker and returns it once it is ready. When the
	// worker exits first, or ctx ends (the spawn timeout), Start stops it
	// and returns an error that quotes the end of its output.
	Start(ctx context.Context, spec Spec) (Worker, error)
	// Release gives the worker name up: the supervisor calls it once the
	// name's last worker is stopped and the name will not be started
	// again (fewer workers, berth stopping). A back end frees what it kept
	// for the name (the systemd back end: its socket unit and readiness
	// sockets). Releasing a name never started does nothing.
	Release(ctx context.Context, name string) error
}

// ErrExited is wrapped by Start's error when the worker exited before it
// became ready.
var ErrExited = errors.New("spawner: worker exited before it was ready")

// ErrSpawnTimeout is wrapped by Start's error when the worker was not ready
// in time.
var ErrSpawnTimeout = errors.New("spawner: worker not ready within the spawn timeout")

// NotReady is the error of a start whose ctx ended before the worker was
// ready: the spawn timeout, or a canceled start. Both back ends use it.
func NotReady(ctxErr error) error {
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		return fmt.Errorf("%w: the app never reported that it listens (did it call listen()?)", ErrSpawnTimeout)
	}
	return fmt.Errorf("spawner: start canceled: %w", ctxErr)
}
