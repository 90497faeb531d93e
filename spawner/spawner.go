package spawner

import (
	"context"
	"errors"
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
}

// DefaultStopTimeout is the grace period between SIGTERM and SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// Worker is a started, ready worker.
type Worker interface {
	// Name is the worker's name ("w1") or, under systemd, its unit name.
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
	// stop timeout or ctx runs out. It returns once the worker is gone.
	Stop(ctx context.Context) error
}

// Backend starts workers.
type Backend interface {
	// Start starts a worker and returns it once it is ready. When the
	// worker exits first, or ctx ends (the spawn timeout), Start stops it
	// and returns an error that quotes the end of its output.
	Start(ctx context.Context, spec Spec) (Worker, error)
}

// ErrExited is wrapped by Start's error when the worker exited before it
// became ready.
var ErrExited = errors.New("spawner: worker exited before it was ready")

// ErrSpawnTimeout is wrapped by Start's error when the worker was not ready
// in time.
var ErrSpawnTimeout = errors.New("spawner: worker not ready within the spawn timeout")
