package spawner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// RunTrampoline is what berth runs as when started with TrampolineArg: it
// sets LISTEN_PID to its own pid and replaces itself with argv, so the app
// finds LISTEN_PID equal to its own pid as the sd_listen_fds protocol wants
// (os/exec cannot set a child's pid in its environment; this is what
// systemd-socket-activate does in C). It returns only on error.
func RunTrampoline(argv []string) error {
	if len(argv) == 0 {
		return errors.New("spawner: trampoline: no command")
	}
	if os.Getenv("LISTEN_FDS") != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("spawner: trampoline: %w", err)
	}
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("spawner: trampoline: exec %s: %w", path, err)
	}
	return nil
}
