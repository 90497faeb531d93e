package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"berth/units"
)

// logsEnv is how `berth logs` runs journalctl and finds where logs go;
// tests swap it.
type logsEnv struct {
	// command returns the journalctl command with args, or an error when
	// journalctl cannot be found.
	command func(args []string) (*exec.Cmd, error)
	// journal reports whether this machine has a systemd journal (it was
	// booted with systemd).
	journal func() bool
	// standalone reports where the logs of a berth serving app go when it
	// runs outside systemd (a sentence), or ok false when no such berth
	// answers here.
	standalone func(app string) (where string, ok bool)
}

// runLogs implements `berth logs NAME [-f] [-n N] [--user]`: berth's own
// unit and its workers' units, merged in time, through journalctl. It
// returns journalctl's exit code, 1 when journalctl is missing or the app
// logs elsewhere, 2 on bad usage.
func runLogs(args []string, stdout, stderr io.Writer) int {
	env := logsEnv{
		command: func(args []string) (*exec.Cmd, error) {
			p, err := exec.LookPath("journalctl")
			if err != nil {
				return nil, err
			}
			return exec.Command(p, args...), nil
		},
		journal: func() bool {
			_, err := os.Stat("/run/systemd/system") // sd_booted()
			return err == nil
		},
		standalone: standaloneLogs,
	}
	return env.run(args, stdout, stderr)
}

const logsAbout = `Shows the journal of app NAME: berth's own unit NAME.service and its worker
units (berth-NAME-w1.service, …), merged in time. Runs journalctl. A berth
serving without systemd has no journal: it logs to its standard error (or
to the file named by serve --log-file), and berth logs says so.`

func (env logsEnv) run(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("logs", "berth logs NAME [-f] [-n N] [--user]", logsAbout)
	follow := cmd.Bool("f", false, "follow: keep printing new lines")
	lines := cmd.Int("n", -1, "show only the last N lines (default: all, or 10 with -f)")
	user := cmd.Bool("user", false, "the app runs under your own systemd instance (berth init --user)")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return usageExit("logs", err, stderr)
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "berth logs: want one app name, got %q; 'berth logs -h' for help\n", pos)
		return 2
	}
	if err := units.CheckName(pos[0]); err != nil {
		fmt.Fprintf(stderr, "berth logs: %v\n", err)
		return 2
	}
	if env.standalone != nil {
		if where, ok := env.standalone(pos[0]); ok {
			fmt.Fprintf(stderr, "berth logs: %s runs without systemd, so it has no journal: %s\n", pos[0], where)
			return 1
		}
	}
	if env.journal != nil && !env.journal() {
		fmt.Fprintf(stderr, "berth logs: this machine has no systemd journal (it was not booted with systemd). A berth serving here logs to its standard error, or to the file given with berth serve --log-file; berth status lists the apps that run.\n")
		return 1
	}
	c, err := env.command(logsArgs(pos[0], *follow, *lines, *user))
	if err != nil {
		fmt.Fprintf(stderr, "berth logs: journalctl not found (%v): berth logs needs systemd's journal; without systemd, berth logs to its own stderr (or to the file given with berth serve --log-file)\n", err)
		return 1
	}
	c.Stdin = os.Stdin // journalctl's pager reads keys
	c.Stdout = stdout
	c.Stderr = stderr
	if err := c.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		fmt.Fprintf(stderr, "berth logs: journalctl: %v\n", err)
		return 1
	}
	return 0
}

// standaloneLogs finds a berth serving app that answers on its admin
// socket and does not log to the journal, and says where its log goes:
// what its standard error is (berth serve --log-file puts the file there).
func standaloneLogs(app string) (string, bool) {
	dir, err := locateApp(app)
	if err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := adminGet(ctx, dir, "/status")
	if err != nil {
		return "", false
	}
	var st statusReply
	if json.Unmarshal(body, &st) != nil || st.Pid <= 0 {
		return "", false
	}
	fd2 := "/proc/" + strconv.Itoa(st.Pid) + "/fd/2"
	target, err := os.Readlink(fd2)
	if err != nil {
		return "", false // not ours to look at: journalctl may know
	}
	if journalStream(st.Pid, target) {
		return "", false
	}
	switch {
	case strings.HasPrefix(target, "/dev/pts/") || strings.HasPrefix(target, "/dev/tty"):
		return fmt.Sprintf("berth (pid %d) logs to the terminal it runs in (%s)", st.Pid, target), true
	case strings.HasPrefix(target, "/"):
		return fmt.Sprintf("berth (pid %d) logs to %s", st.Pid, target), true
	default:
		return fmt.Sprintf("berth (pid %d) logs to its standard error (%s), which whatever started it reads; berth serve --log-file FILE writes a file instead", st.Pid, target), true
	}
}

// journalStream reports whether fd2, the target of /proc/PID/fd/2 of pid,
// is the journal stream systemd gave it: a socket whose inode is the one
// JOURNAL_STREAM names in its environment (as logging.IsJournalStream
// checks from the inside).
func journalStream(pid int, fd2 string) bool {
	ino, ok := strings.CutPrefix(fd2, "socket:[")
	if !ok {
		return false
	}
	ino = strings.TrimSuffix(ino, "]")
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return true // cannot tell; a socket on stderr is most likely the journal
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "JOURNAL_STREAM="); ok {
			_, want, _ := strings.Cut(v, ":")
			return want == ino
		}
	}
	return false
}

// logsArgs is the journalctl command line for app's logs, interleaved by
// time with ISO timestamps: its service and its workers' units, which also
// hold berth's lines about them (OBJECT_SYSTEMD_UNIT) and systemd's.
// lines < 0 means journalctl's default.
//
// journalctl resolves a --unit glob once, against the units already in
// the journal, so a follower would miss a worker unit that first starts
// later. With follow, the workers are matched by their slice instead (their
// own output, berth's lines about them, not systemd's).
func logsArgs(app string, follow bool, lines int, user bool) []string {
	var args []string
	switch {
	case follow && user:
		args = []string{"_SYSTEMD_USER_UNIT=" + units.Service(app), "+", "_SYSTEMD_USER_SLICE=" + units.Slice(app)}
	case follow:
		args = []string{
			"_SYSTEMD_UNIT=" + units.Service(app), "+",
			"_SYSTEMD_SLICE=" + units.Slice(app), "+",
			"_PID=1", "UNIT=" + units.Service(app), // systemd about berth
		}
	case user:
		args = []string{"--user-unit=" + units.Service(app), "--user-unit=" + units.WorkerGlob(app)}
	default:
		args = []string{"--unit=" + units.Service(app), "--unit=" + units.WorkerGlob(app)}
	}
	args = append(args, "--output=short-iso")
	if lines >= 0 {
		args = append(args, "--lines="+strconv.Itoa(lines))
	}
	if follow {
		args = append(args, "--follow")
	}
	return args
}
