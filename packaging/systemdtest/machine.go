package systemdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// DefaultBootTimeout bounds a boot when Config.BootTimeout is zero.
const DefaultBootTimeout = 90 * time.Second

// shutdownTimeout bounds an orderly poweroff before the container is killed.
const shutdownTimeout = 90 * time.Second

// Config describes a container. The zero value boots a container with a
// unique name and nothing bound in.
type Config struct {
	// Name is the machine name, also the container's hostname. If empty, a
	// unique "berth-test-XXXXXXXX" is used.
	Name string

	// Binds are host paths made visible inside the container
	// (systemd-nspawn --bind / --bind-ro). Use them for directories that are
	// not on the host's root filesystem.
	Binds []Bind

	// BootTimeout bounds the boot, until systemd reports "running". If zero,
	// DefaultBootTimeout is used.
	BootTimeout time.Duration
}

// Bind is one host path bound into the container.
type Bind struct {
	// Host is the absolute host path.
	Host string
	// Container is where it appears inside. If empty, the same as Host.
	Container string
	// ReadOnly binds it read-only (--bind-ro).
	ReadOnly bool
}

// Machine is a running container. Its methods may be called from several
// goroutines at once.
type Machine struct {
	name    string
	dir     string // empty host directory the container's tmpfs is mounted on (in the private namespace)
	cmd     *exec.Cmd
	pid1    int
	console *tail

	exited  chan struct{} // closed when systemd-nspawn has exited
	waitErr error         // systemd-nspawn's exit; read only after exited is closed

	closeOnce sync.Once
	closeErr  error
}

// Boot boots a container for t and returns once its systemd is running. It
// skips t (fails it under BERTH_TEST_STRICT=1) when the machine cannot run
// containers, fails t when the boot fails, and powers the container off in
// t.Cleanup.
func Boot(t testing.TB, cfg Config) *Machine {
	t.Helper()
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.bootTimeout())
	defer cancel()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// need checks what a boot needs, through testenv.
func need(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	for _, c := range []string{"systemd-nspawn", "nsenter", "unshare", "mount"} {
		testenv.NeedCommand(t, c)
	}
	_, err := os.Stat("/usr/lib/systemd/systemd")
	testenv.Need(t, err == nil, "/usr/lib/systemd/systemd not installed (apt-get install systemd)")
}

func (c Config) bootTimeout() time.Duration {
	if c.BootTimeout > 0 {
		return c.BootTimeout
	}
	return DefaultBootTimeout
}

// Start boots a container and returns once its systemd is running; ctx
// bounds the boot only. The caller must Close the Machine. Most tests use
// Boot or Shared instead.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	name := cfg.Name
	if name == "" {
		b := make([]byte, 4)
		rand.Read(b)
		name = "berth-test-" + hex.EncodeToString(b)
	}
	dir, err := os.MkdirTemp("", name+".")
	if err != nil {
		return nil, fmt.Errorf("systemdtest: boot %s: %w", name, err)
	}
	args := []string{"--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", bootScript, "sh", dir, name}
	for _, b := range cfg.Binds {
		opt := "--bind="
		if b.ReadOnly {
			opt = "--bind-ro="
		}
		if b.Container != "" && b.Container != b.Host {
			opt += b.Host + ":" + b.Container
		} else {
			opt += b.Host
		}
		args = append(args, opt)
	}
	m := &Machine{
		name:    name,
		dir:     dir,
		console: &tail{max: 16 << 10},
		exited:  make(chan struct{}),
	}
	m.cmd = exec.Command("unshare", args...)
	m.cmd.Env = cleanEnv()
	m.cmd.Stdout = m.console
	m.cmd.Stderr = m.console
	m.cmd.WaitDelay = 5 * time.Second
	m.cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without cleaning up, systemd-nspawn gets
		// SIGTERM and powers the container off; the private mount namespace
		// then goes away with it.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := m.cmd.Start(); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("systemdtest: boot %s: %w", name, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()
	if err := m.waitRunning(ctx); err != nil {
		cerr := m.Close()
		return nil, errors.Join(fmt.Errorf("systemdtest: boot %s: %w\nconsole:\n%s", name, err, m.console.String()), cerr)
	}
	return m, nil
}

// bootScript runs in a private mount namespace as root: $1 is an empty host
// directory, $2 the machine name, the rest extra systemd-nspawn options. It
// mounts a tmpfs on $1, an overlay of / on $1/root with its upper layer on
// the tmpfs, a tmpfs on /run/systemd/nspawn (where systemd-nspawn keeps
// locks and propagation directories, so none are left on the host), writes
// the boot target and execs systemd-nspawn.
const bootScript = `set -eu
dir=$1 name=$2
shift 2
mount -t tmpfs -o mode=0755 berth-test "$dir"
mkdir "$dir/upper" "$dir/work" "$dir/root"
mount -t overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" berth-test "$dir/root"
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=0755 berth-test /run/systemd/nspawn
mkdir -p "$dir/root/etc/systemd/system"
echo "$name" > "$dir/root/etc/hostname"
cat > "$dir/root/etc/systemd/system/berth-test.target" <<'EOF'
[Unit]
Description=berth test container
Requires=basic.target
Wants=dbus.socket systemd-journald.socket
After=basic.target
AllowIsolate=yes
EOF
exec systemd-nspawn --quiet --directory="$dir/root" --boot --register=no --keep-unit \
	--machine="$name" --console=read-only "$@" -- --unit=berth-test.target
`

// waitRunning finds the container's systemd and waits until it reports
// "running", or until systemd-nspawn exits or ctx ends.
func (m *Machine) waitRunning(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	nspawn := m.cmd.Process.Pid // unshare and sh exec, so this is systemd-nspawn
	for m.pid1 == 0 {
		pid, err := findInit(nspawn)
		if err != nil {
			return err
		}
		m.pid1 = pid
		if pid != 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the container's systemd to start: %w", ctx.Err())
		case <-m.exited:
			return fmt.Errorf("systemd-nspawn exited: %v", m.waitErr)
		case <-tick.C:
		}
	}
	for {
		// --wait blocks until the boot has finished; before systemd listens
		// on its private socket it fails at once, so retry on the ticker.
		out, _ := m.Command(ctx, "systemctl", "is-system-running", "--wait").Output()
		state := strings.TrimSpace(string(out))
		switch state {
		case "running":
			return nil
		case "degraded", "maintenance", "stopping":
			failed, _ := m.Command(ctx, "systemctl", "--failed", "--no-legend").CombinedOutput()
			return fmt.Errorf("container's systemd is %s; failed units:\n%s", state, failed)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the container's systemd to be running (last state %q): %w", state, ctx.Err())
		case <-m.exited:
			return fmt.Errorf("systemd-nspawn exited: %v", m.waitErr)
		case <-tick.C:
		}
	}
}

// findInit returns the host pid of systemd-nspawn's child once that child is
// pid 1 of its own pid namespace and runs systemd, or 0 if none is yet.
func findInit(ppid int) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("find the container's init: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone
		}
		if field(st, "PPid:") != strconv.Itoa(ppid) {
			continue
		}
		ns := strings.Fields(field(st, "NSpid:"))
		if len(ns) < 2 || ns[len(ns)-1] != "1" {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || path.Base(exe) != "systemd" {
			continue
		}
		return pid, nil
	}
	return 0, nil
}

// field returns the value of the /proc/PID/status line starting with key.
func field(status []byte, key string) string {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Name returns the machine name, which is also the container's hostname.
func (m *Machine) Name() string { return m.name }

// PID returns the host pid of the container's systemd (pid 1 inside).
func (m *Machine) PID() int { return m.pid1 }

// Console returns the end of the container's console output (systemd's boot
// and shutdown messages), for failure messages.
func (m *Machine) Console() string { return m.console.String() }

// cleanEnv is the environment of commands run inside the container.
func cleanEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LANG=C.UTF-8",
		"SYSTEMD_PAGER=",
		"SYSTEMD_COLORS=0",
	}
}

// Command returns a command that runs name with args inside the container,
// as root, with the clean environment described in the package doc. The
// caller may set Stdin, Stdout, Stderr and append to Env before starting it.
// When ctx ends, the command's whole process group is killed (nsenter and
// the command it forked).
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	a := append([]string{"-t", strconv.Itoa(m.pid1), "-a", "-r", "-w", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", a...)
	cmd.Env = cleanEnv()
	// nsenter forks to enter the pid namespace, so killing nsenter alone
	// would leave the command running: kill its process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs name with args inside the container and returns its combined
// output. A non-zero exit is an error that quotes the command and its
// output.
func (m *Machine) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := m.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("run %q in %s: %w\n%s", append([]string{name}, args...), m.name, err, out)
	}
	return string(out), nil
}

// MustRun is Run with t's context that fails t on error.
func (m *Machine) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := m.Run(t.Context(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// AddUser makes a user in the container with useradd and args, unless
// one of that name exists: the container outlives a test's run, and
// go test -count=2 runs the test again in it.
func (m *Machine) AddUser(t testing.TB, name string, args ...string) {
	t.Helper()
	if _, err := m.Run(t.Context(), "id", "-u", name); err == nil {
		return
	}
	m.MustRun(t, "useradd", append(args, name)...)
}

// WaitJournal reads the container's journal (`journalctl --output=cat
// ARGS…`, ARGS selecting units or fields) until a line contains want, and
// returns what it read. It fails when ctx ends first (if ctx has no
// deadline, after 30 s), quoting what it read. Use it instead of reading the
// journal once: journald stores a service's output asynchronously.
//
// It polls every 100 ms rather than following with `journalctl --follow`,
// which in systemd 252 can miss the entries of a unit that had none when it
// started (systemd issue 25649).
func (m *Machine) WaitJournal(ctx context.Context, want string, args ...string) (string, error) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	}
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	a := append([]string{"--output=cat", "--no-pager"}, args...)
	var last []byte
	for {
		out, err := m.Command(ctx, "journalctl", a...).Output()
		if err == nil {
			last = out
			if bytes.Contains(out, []byte(want)) {
				return string(out), nil
			}
		}
		select {
		case <-ctx.Done():
			return string(last), fmt.Errorf("wait for %q in the journal of %s (journalctl %s): %w; read:\n%s", want, m.name, strings.Join(args, " "), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// WriteFile writes data to the file at path inside the container (making
// its parent directories), with mode perm, owned by root. Paths resolve as
// they do inside the container.
func (m *Machine) WriteFile(ctx context.Context, path string, data []byte, perm os.FileMode) error {
	return m.write(ctx, path, bytes.NewReader(data), perm)
}

// CopyFile copies the host file src to dst inside the container, keeping its
// permission bits.
func (m *Machine) CopyFile(ctx context.Context, src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s into %s: %w", src, m.name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("copy %s into %s: %w", src, m.name, err)
	}
	return m.write(ctx, dst, f, fi.Mode().Perm())
}

func (m *Machine) write(ctx context.Context, path string, r io.Reader, perm os.FileMode) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("write %s in %s: path is not absolute", path, m.name)
	}
	cmd := m.Command(ctx, "/bin/sh", "-c",
		`set -e; mkdir -p "$(dirname "$1")"; cat > "$1.tmp$$"; chmod "$2" "$1.tmp$$"; mv -f "$1.tmp$$" "$1"`,
		"sh", path, fmt.Sprintf("%o", perm))
	cmd.Stdin = r
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("write %s in %s: %w: %s", path, m.name, err, out)
	}
	return nil
}

// Close powers the container off and waits until it is gone, killing it if
// an orderly poweroff takes longer than 30 s. Afterwards nothing of it is
// mounted or running. Close may be called more than once.
func (m *Machine) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Machine) close() error {
	var errs []error
	if m.pid1 != 0 {
		// SIGRTMIN+4 asks systemd for poweroff.target.
		syscall.Kill(m.pid1, syscall.Signal(34+4))
	} else {
		m.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-m.exited:
	case <-time.After(shutdownTimeout):
		errs = append(errs, fmt.Errorf("systemdtest: %s did not power off within %s; killed it\nconsole:\n%s", m.name, shutdownTimeout, m.console.String()))
		if m.pid1 != 0 {
			syscall.Kill(m.pid1, syscall.SIGKILL) // ends its whole pid namespace
		}
		m.cmd.Process.Kill()
		<-m.exited
	}
	// The mounts lived in systemd-nspawn's private mount namespace and went
	// with it; only the empty mount point is left.
	if err := os.Remove(m.dir); err != nil {
		errs = append(errs, fmt.Errorf("systemdtest: remove %s: %w", m.dir, err))
	}
	return errors.Join(errs...)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex // protects buf
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
