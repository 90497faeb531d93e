package spawner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// TrampolineArg is the hidden first argument that makes berth act as the
// exec back end's trampoline (see RunTrampoline).
const TrampolineArg = "__exec-worker"

// ExecConfig configures the exec back end. Its zero value is not usable:
// RuntimeDir is required.
type ExecConfig struct {
	// RuntimeDir is the private directory (mode 0700) where worker sockets
	// are made. Required.
	RuntimeDir string
	// Trampoline is the command that re-executes berth as a trampoline
	// setting LISTEN_PID (see RunTrampoline). If nil, the running
	// executable with TrampolineArg is used.
	Trampoline []string
	// Output receives each line the workers print, tagged with the worker.
	// If nil, os.Stderr is used. Unused when OutputFor is set.
	Output io.Writer
	// OutputFor, if set, returns where one output stream ("stdout" or
	// "stderr") of a worker goes, instead of Output. Each Write carries
	// what one read of the stream returned, so that a multi-line write of
	// the app's (a stack trace) usually arrives whole, and may end without
	// a newline.
	OutputFor func(app, worker, stream string) io.Writer
	// TailLines is how many lines of output an error quotes. If zero, 20.
	TailLines int
	// Log receives the back end's own messages. If nil, nothing is logged.
	Log *slog.Logger
}

// Exec starts workers as child processes of berth.
type Exec struct {
	cfg ExecConfig
	seq atomic.Int64
}

// NewExec returns the exec back end.
func NewExec(cfg ExecConfig) (*Exec, error) {
	if cfg.RuntimeDir == "" {
		return nil, errors.New("spawner: exec back end needs a runtime directory")
	}
	if cfg.Trampoline == nil {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("spawner: find berth's own executable for the worker trampoline: %w", err)
		}
		cfg.Trampoline = []string{self, TrampolineArg}
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	if cfg.TailLines == 0 {
		cfg.TailLines = 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Exec{cfg: cfg}, nil
}

type execWorker struct {
	Liveness      // from its readiness connection
	spec          Spec
	network, addr string
	cmd           *exec.Cmd
	out           *lineWriter
	rd            *Readiness // closed when the worker exits
	done          chan struct{}
	err           error // set before done is closed
	stopOnce      sync.Once
}

func (w *execWorker) Name() string                    { return w.spec.Name }
func (w *execWorker) Addr() (network, address string) { return w.network, w.addr }
func (w *execWorker) Pid() int                        { return w.cmd.Process.Pid }
func (w *execWorker) Done() <-chan struct{}           { return w.done }
func (w *execWorker) Err() error                      { return w.err }

// Start implements Backend.
func (e *Exec) Start(ctx context.Context, spec Spec) (Worker, error) {
	if len(spec.Argv) == 0 {
		return nil, fmt.Errorf("start worker %s of %s: no command", spec.Name, spec.App)
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = DefaultStopTimeout
	}
	// Each start gets fresh socket names, so that a replacement never
	// shares a path with the worker it replaces.
	base := filepath.Join(e.cfg.RuntimeDir, fmt.Sprintf("%s.%d", spec.Name, e.seq.Add(1)))
	rd, err := ListenReadiness(base+".ready", base+".notify", -1, -1)
	if err != nil {
		return nil, fmt.Errorf("start worker %s of %s: %w", spec.Name, spec.App, err)
	}
	lines := e.cfg.Output
	if e.cfg.OutputFor != nil {
		lines = nil // the line writer only keeps the tail
	}
	w := &execWorker{
		spec: spec, rd: rd,
		out:  newLineWriter(lines, fmt.Sprintf("[%s %s] ", spec.App, spec.Name), e.cfg.TailLines),
		done: make(chan struct{}),
	}
	env := append(os.Environ(), spec.Env...)
	env = append(env,
		"BERTH_APP="+spec.App,
		"BERTH_WORKER="+spec.Name,
		"BERTH_READY_SOCKET="+rd.StreamPath,
		"NOTIFY_SOCKET="+rd.DgramPath,
	)
	var sock *os.File
	if spec.PortEnv {
		port, err := freeLoopbackPort()
		if err != nil {
			rd.Close()
			return nil, fmt.Errorf("start worker %s of %s: %w", spec.Name, spec.App, err)
		}
		w.network, w.addr = "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		env = append(env, "PORT="+strconv.Itoa(port))
	} else {
		w.network, w.addr = "unix", base+".sock"
		sock, err = listenUnixFile(w.addr)
		if err != nil {
			rd.Close()
			return nil, fmt.Errorf("start worker %s of %s: %w", spec.Name, spec.App, err)
		}
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=berth")
	}

	argv := append(append([]string(nil), e.cfg.Trampoline...), spec.Argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = env
	cmd.Stdout = w.out
	cmd.Stderr = w.out
	if e.cfg.OutputFor != nil {
		cmd.Stdout = io.MultiWriter(w.out, e.cfg.OutputFor(spec.App, spec.Name, "stdout"))
		cmd.Stderr = io.MultiWriter(w.out, e.cfg.OutputFor(spec.App, spec.Name, "stderr"))
	}
	if sock != nil {
		cmd.ExtraFiles = []*os.File{sock} // fd 3
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // own process group: stop reaches the app's children
		Pdeathsig: syscall.SIGKILL, // dies with berth, even when berth is SIGKILLed
	}
	cmd.WaitDelay = time.Second // do not hang on output pipes held by the app's children
	w.cmd = cmd
	err = cmd.Start()
	if sock != nil {
		sock.Close() // the worker holds it now; a dead worker refuses connections
	}
	if err != nil {
		rd.Close()
		os.Remove(w.addr)
		return nil, fmt.Errorf("start worker %s of %s: %w", spec.Name, spec.App, err)
	}
	e.cfg.Log.Debug("worker started", "app", spec.App, "worker", spec.Name, "pid", cmd.Process.Pid)
	go w.wait()
	if spec.Started != nil {
		spec.Started(cmd.Process.Pid, w.out.Tail)
	}

	// READY=1 counts from the worker or a process it started (its process
	// group), not from anyone who can reach the socket.
	pid, err := ReadyWait{
		Readiness: rd,
		Accept: func(pid int) bool {
			pgid, err := syscall.Getpgid(pid)
			return err == nil && pgid == cmd.Process.Pid
		},
		Exited: w.done, ExitErr: func() error { return w.err },
		Probe: spec.Probe || spec.PortEnv, Network: w.network, Addr: w.addr,
	}.Wait(ctx)
	if err != nil {
		if !errors.Is(err, ErrExited) {
			w.Stop(context.Background())
		}
		return nil, fmt.Errorf("start worker %s of %s: %w%s", spec.Name, spec.App, err, quoteTail(w.out.Tail()))
	}
	if pid == 0 {
		pid = cmd.Process.Pid
	}
	w.Liveness = rd.Liveness(pid)
	return w, nil
}

func (w *execWorker) wait() {
	err := w.cmd.Wait()
	// Whatever the app left in its process group goes with it.
	syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	w.out.Flush()
	w.rd.Close()
	if w.network == "unix" {
		os.Remove(w.addr)
	}
	if err == nil {
		err = errors.New("exited with status 0")
	}
	w.err = err
	close(w.done)
}

// Stop implements Worker: SIGTERM to the worker's process group, SIGKILL
// once the stop timeout or ctx runs out.
func (w *execWorker) Stop(ctx context.Context) error {
	w.stopOnce.Do(func() {
		syscall.Kill(-w.cmd.Process.Pid, syscall.SIGTERM)
	})
	t := time.NewTimer(w.spec.StopTimeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	<-w.done
	return fmt.Errorf("stop worker %s of %s: killed after it did not exit in time", w.spec.Name, w.spec.App)
}

// Usage implements Worker: the resident memory and CPU time of the
// worker's process tree (its process group and its descendants).
func (w *execWorker) Usage(ctx context.Context) (Usage, error) {
	if isClosed(w.done) {
		return Usage{}, fmt.Errorf("worker %s of %s has exited", w.spec.Name, w.spec.App)
	}
	return treeUsage(w.cmd.Process.Pid)
}

// Release implements Backend. Exec workers keep nothing under their name:
// each start has its own sockets.
func (e *Exec) Release(ctx context.Context, name string) error { return nil }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// listenUnixFile makes a listening Unix socket at path (mode 0600) and
// returns it as a file to hand to a child.
func listenUnixFile(path string) (*os.File, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("worker socket %s: %w", path, err)
	}
	defer l.Close()
	l.SetUnlinkOnClose(false)
	if err := secureSocket(path, -1, -1); err != nil {
		return nil, err
	}
	f, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("worker socket %s: %w", path, err)
	}
	return f, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
