package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	"berth/units"
)

// logsEnv is how `berth logs` runs journalctl; tests swap it.
type logsEnv struct {
	// command returns the journalctl command with args, or an error when
	// journalctl cannot be found.
	command func(args []string) (*exec.Cmd, error)
}

// runLogs implements `berth logs NAME [-f] [-n N] [--user]`: berth's own
// unit and its workers' units, merged in time, through journalctl. It
// returns journalctl's exit code, 1 when journalctl is missing, 2 on bad
// usage.
func runLogs(args []string, stdout, stderr io.Writer) int {
	env := logsEnv{command: func(args []string) (*exec.Cmd, error) {
		p, err := exec.LookPath("journalctl")
		if err != nil {
			return nil, err
		}
		return exec.Command(p, args...), nil
	}}
	return env.run(args, stdout, stderr)
}

const logsUsage = `usage: berth logs NAME [-f] [-n N] [--user]

Shows the journal of app NAME: berth's own unit NAME.service and its worker
units (berth-NAME-w1.service, …), merged in time. Runs journalctl.

Flags:
`

func (env logsEnv) run(args []string, stdout, stderr io.Writer) int {
	var (
		follow bool
		lines  int
		user   bool
	)
	fs := flag.NewFlagSet("berth logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&follow, "f", false, "follow: keep printing new lines")
	fs.IntVar(&lines, "n", -1, "show only the last N lines (default: all, or 10 with -f)")
	fs.BoolVar(&user, "user", false, "the app runs under your own systemd instance (berth init --user)")
	fs.Usage = func() {
		fmt.Fprint(stderr, logsUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "berth logs: want one app name, got %q\n", pos)
		return 2
	}
	if err := units.CheckName(pos[0]); err != nil {
		fmt.Fprintf(stderr, "berth logs: %v\n", err)
		return 2
	}
	cmd, err := env.command(logsArgs(pos[0], follow, lines, user))
	if err != nil {
		fmt.Fprintf(stderr, "berth logs: journalctl not found (%v): berth logs needs systemd's journal; without systemd, berth logs to its own stderr\n", err)
		return 1
	}
	cmd.Stdin = os.Stdin // journalctl's pager reads keys
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		fmt.Fprintf(stderr, "berth logs: journalctl: %v\n", err)
		return 1
	}
	return 0
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
