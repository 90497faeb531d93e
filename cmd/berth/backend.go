package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"berth/cmd/berth/logging"
	"berth/spawner"
	"berth/spawner/systemd"
)

// chooseBackend picks the worker back end for --spawner: exec (berth forks
// the workers) or systemd (transient units over D-Bus); auto means systemd
// when berth runs as root under systemd (INVOCATION_ID or NOTIFY_SOCKET
// set) and the system bus answers, else exec. Under a user's manager
// (berth init --user) auto means exec: the back end starts units on the
// system manager, as root. The returned func releases the back end once the
// workers are stopped.
func chooseBackend(cfg *serveConfig, rundir string, stderr io.Writer, log *slog.Logger) (spawner.Backend, func(), error) {
	useSystemd := cfg.Spawner == "systemd"
	if cfg.Spawner == "auto" {
		useSystemd = underSystemd(os.Getenv) && os.Geteuid() == 0 && !cfg.PortEnv
	}
	if cfg.Spawner == "systemd" && os.Geteuid() != 0 {
		return nil, nil, errors.New("--spawner=systemd needs root: it starts the workers as units of the system manager (under your own manager, use --spawner=exec)")
	}
	if useSystemd {
		b, err := newSystemdBackend(cfg, rundir, log)
		if err == nil {
			log.Info("workers run as transient systemd units", "parent", b.Parent())
			return b, func() {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := b.Close(ctx); err != nil {
					log.Warn("stop worker units", "err", err)
				}
			}, nil
		}
		if cfg.Spawner == "systemd" {
			return nil, nil, err
		}
		log.Warn("systemd back end unavailable; berth forks the workers itself", "err", err)
	}
	out := logging.NewAppOutput(stderr, os.Getenv)
	e, err := spawner.NewExec(spawner.ExecConfig{RuntimeDir: rundir, OutputFor: out.For, Log: log})
	return e, func() {}, err
}

// underSystemd reports whether berth was started by systemd as a service.
func underSystemd(getenv func(string) string) bool {
	return getenv("INVOCATION_ID") != "" || getenv("NOTIFY_SOCKET") != ""
}

func newSystemdBackend(cfg *serveConfig, rundir string, log *slog.Logger) (*systemd.Backend, error) {
	mem, err := parseBytes(cfg.MemoryMax)
	if err != nil {
		return nil, fmt.Errorf("--memory-max: %w", err)
	}
	cpu, err := parsePercent(cfg.CPUQuota)
	if err != nil {
		return nil, fmt.Errorf("--cpu-quota: %w", err)
	}
	// A worker over --memory-limit is replaced; MemoryHigh= a tenth above
	// it slows a leak down while the replacement starts.
	limit, err := parseBytes(cfg.MemoryLimit)
	if err != nil {
		return nil, fmt.Errorf("--memory-limit: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return systemd.New(ctx, systemd.Config{
		MemoryHigh: limit + limit/10,
		RuntimeDir: rundir,
		User:       cfg.User, Group: cfg.Group,
		MemoryMax: mem, CPUQuota: cpu, TasksMax: cfg.TasksMax,
		NoSandbox: cfg.NoSandbox,
		Log:       log,
	})
}

// parseBytes reads a size such as 512M, 2G or 1048576 ("" is 0).
func parseBytes(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	mult := uint64(1)
	num := strings.TrimSpace(s)
	if n := len(num); n > 0 {
		switch strings.ToUpper(num[n-1:]) {
		case "K":
			mult = 1 << 10
		case "M":
			mult = 1 << 20
		case "G":
			mult = 1 << 30
		case "T":
			mult = 1 << 40
		}
		if mult > 1 {
			num = num[:n-1]
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q: want a positive size such as 512M or 2G", s)
	}
	return v * mult, nil
}

// parsePercent reads a CPU quota such as 50% or 200 ("" is 0).
func parsePercent(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || v <= 0 {
		return 0, errors.New(strconv.Quote(s) + ": want a positive percentage such as 50% (of one CPU)")
	}
	return v, nil
}
