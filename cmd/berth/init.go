package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"

	"berth/units"
)

// initEnv is what `berth init` needs from the machine; tests swap it.
type initEnv struct {
	systemDir  string                 // where system units go
	getenv     func(string) string    // HOME, XDG_CONFIG_HOME
	executable func() (string, error) // the berth binary that ExecStart names
}

// runInit implements `berth init APP_DIR --name NAME --port N [--stdout]
// [--user] [--force] [--berth PATH] [-- SERVE_ARGS…]`: it writes NAME.socket
// and NAME.service for the app and says what to run next. It returns the
// exit code: 0 done, 1 failed, 2 bad usage.
func runInit(args []string, stdout, stderr io.Writer) int {
	env := initEnv{systemDir: "/etc/systemd/system", getenv: os.Getenv, executable: os.Executable}
	return env.run(args, stdout, stderr)
}

const initSynopsis = "berth init APP_DIR (--port N | --listen ADDR…) [--name NAME] [--stdout] [--user] [--force] [-- SERVE_ARGS…]"

const initAbout = `Writes the systemd units that serve the app in APP_DIR: NAME.socket listens
on port N (all addresses) or on each --listen address, NAME.service runs
'berth serve APP_DIR --name NAME SERVE_ARGS…' when the first connection
comes. SERVE_ARGS are checked with serve's own parser first. The units go to
/etc/systemd/system, or with --user to ~/.config/systemd/user for
'systemctl --user'.`

func (env initEnv) run(args []string, stdout, stderr io.Writer) int {
	var (
		in       units.Init
		listen   stringList
		toStdout bool
		force    bool
	)
	cmd := newCommand("init", initSynopsis, initAbout)
	cmd.StringVar(&in.Name, "name", "", "app name: the units are NAME.socket and NAME.service (default: APP_DIR's base name)")
	cmd.IntVar(&in.Port, "port", 0, "TCP port the socket listens on, all addresses (this or --listen is required)")
	cmd.Var(&listen, "listen", "address the socket listens on instead: 127.0.0.1:8080 (behind nginx), [::1]:8080, a port, or unix:/path (repeatable; ListenStream=)")
	cmd.StringVar(&in.Berth, "berth", "", "berth binary that the service runs (default: this one)")
	cmd.BoolVar(&toStdout, "stdout", false, "print the units instead of writing them")
	cmd.BoolVar(&in.UserManager, "user", false, "write units for your own systemd instance (systemctl --user), no root needed")
	cmd.BoolVar(&force, "force", false, "overwrite units that exist")
	var tlsCerts, tlsKeys stringList
	cmd.Var(&tlsCerts, "tls-cert", "TLS certificate chain file, given to berth as a systemd credential (repeatable, with --tls-key)")
	cmd.Var(&tlsKeys, "tls-key", "key file of the --tls-cert in the same position")
	ownArgs, serveArgs := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		ownArgs, serveArgs = args[:i], args[i+1:]
	}
	pos, err := cmd.parse(ownArgs, stdout)
	if err != nil {
		return usageExit("init", err, stderr)
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "berth init: want one app directory, got %d arguments %q (serve flags go after --)\n", len(pos), pos)
		return 2
	}
	if in.Port == 0 && len(listen) == 0 {
		fmt.Fprintln(stderr, "berth init: --port or --listen is required: where the app is served")
		return 2
	}
	if in.Port != 0 && len(listen) > 0 {
		fmt.Fprintln(stderr, "berth init: give --port or --listen, not both (--listen :PORT is all addresses too)")
		return 2
	}
	in.Listen = listen
	// The service runs `berth serve … SERVE_ARGS`: a mistake there is
	// reported now, not at the first connection.
	if err := checkServeArgs(serveArgs); err != nil {
		fmt.Fprintf(stderr, "berth init: serve arguments after --: %v\n", err)
		return 2
	}
	in.ServeArgs = serveArgs
	if len(tlsCerts) != len(tlsKeys) {
		fmt.Fprintf(stderr, "berth init: --tls-cert given %d times and --tls-key %d times: give each certificate its key\n", len(tlsCerts), len(tlsKeys))
		return 2
	}
	for i := range tlsCerts {
		c, err1 := filepath.Abs(tlsCerts[i])
		k, err2 := filepath.Abs(tlsKeys[i])
		if err := errors.Join(err1, err2); err != nil {
			fmt.Fprintf(stderr, "berth init: %v\n", err)
			return 1
		}
		in.TLS = append(in.TLS, units.TLSPair{Cert: c, Key: k})
	}

	if in.AppDir, err = filepath.Abs(pos[0]); err != nil {
		fmt.Fprintf(stderr, "berth init: app directory %s: %v\n", pos[0], err)
		return 1
	}
	if fi, err := os.Stat(in.AppDir); err != nil {
		fmt.Fprintf(stderr, "berth init: app directory: %v\n", err)
		return 1
	} else if !fi.IsDir() {
		fmt.Fprintf(stderr, "berth init: app directory %s is not a directory\n", in.AppDir)
		return 1
	}
	if in.Name == "" {
		in.Name = filepath.Base(in.AppDir)
		if err := units.CheckName(in.Name); err != nil {
			fmt.Fprintf(stderr, "berth init: %v; name the app with --name\n", err)
			return 2
		}
	}
	if in.Berth == "" {
		if in.Berth, err = env.executable(); err != nil {
			fmt.Fprintf(stderr, "berth init: find the berth binary (name it with --berth): %v\n", err)
			return 1
		}
	}
	files, err := in.Files()
	if err != nil {
		fmt.Fprintf(stderr, "berth init: %v\n", err)
		return 2
	}
	for _, w := range in.Warnings() {
		fmt.Fprintf(stderr, "berth init: warning: %s\n", w)
	}
	if _, err := os.Stat(in.Berth); err != nil {
		fmt.Fprintf(stderr, "berth init: warning: the berth binary %s: %v; the service cannot start until it exists\n", in.Berth, err)
	}

	if toStdout {
		for i, f := range files {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			stdout.Write(f.Data)
		}
		return 0
	}

	dir := env.systemDir
	if in.UserManager {
		if dir, err = env.userUnitDir(); err != nil {
			fmt.Fprintf(stderr, "berth init: %v\n", err)
			return 1
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(stderr, "berth init: %v\n", err)
			return 1
		}
	}
	var existing []string
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if _, err := os.Lstat(p); err == nil {
			existing = append(existing, p)
		}
	}
	if len(existing) > 0 && !force {
		fmt.Fprintf(stderr, "berth init: %s already exists; nothing written (--force overwrites)\n", strings.Join(existing, " and "))
		return 1
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := writeFileAtomic(p, f.Data, 0o644); err != nil {
			fmt.Fprintf(stderr, "berth init: %v\n", err)
			if errors.Is(err, os.ErrPermission) && !in.UserManager {
				fmt.Fprintln(stderr, "berth init: run it as root (sudo), or use --user for your own systemd instance")
			}
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}

	systemctl := "systemctl"
	if in.UserManager {
		systemctl = "systemctl --user"
	}
	where := fmt.Sprintf("port %d", in.Port)
	if len(in.Listen) > 0 {
		where = strings.Join(in.Listen, " and ")
	}
	fmt.Fprintf(stdout, "\nNext, start serving on %s:\n\n", where)
	fmt.Fprintf(stdout, "  %s enable --now %s\n\n", systemctl, units.Socket(in.Name))
	if len(existing) > 0 {
		fmt.Fprintf(stdout, "If %s was running, restart it on the new units:\n\n  %s daemon-reload && %s restart %s\n\n", units.Service(in.Name), systemctl, systemctl, units.Service(in.Name))
	}
	fmt.Fprintf(stdout, "berth starts on the first connection. Then: berth status %s, berth logs %s.\n", in.Name, in.Name)
	if in.UserManager {
		fmt.Fprintln(stdout, "To keep it serving while you are logged out: loginctl enable-linger")
	}
	return 0
}

// userUnitDir is where a user's own manager reads units:
// $XDG_CONFIG_HOME/systemd/user, by default ~/.config/systemd/user.
func (env initEnv) userUnitDir() (string, error) {
	if x := env.getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "systemd", "user"), nil
	}
	home := env.getenv("HOME")
	if !filepath.IsAbs(home) {
		return "", errors.New("--user: HOME is not set, so there is no ~/.config/systemd/user")
	}
	return filepath.Join(home, ".config", "systemd", "user"), nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, flushed to disk before it takes path's place, so that systemd
// never reads half a unit, not even after a power cut.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := renameio.WriteFile(path, data, perm, renameio.WithStaticPermissions(perm)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
