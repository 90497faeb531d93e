package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// makeRuntimeDir makes the private directory (mode 0700) for the app's
// worker sockets and admin socket: $RUNTIME_DIRECTORY under systemd
// (RuntimeDirectory=berth/NAME), else appRuntimeDir(name). A directory left
// by a berth that died is taken over; one whose admin socket still answers
// belongs to a running berth, and is an error. cleanup removes what berth
// made.
//
// The base directory that holds it is checked before anything is made in
// it: in the temp dir (a user without XDG_RUNTIME_DIR), /tmp/berth-UID is
// a name any local user can take first, so berth makes it 0700 itself and
// refuses one that is a symlink, belongs to someone else, or that others
// may write to.
func makeRuntimeDir(app string) (dir string, cleanup func(), err error) {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		return d, func() {}, nil
	}
	dir = appRuntimeDir(app)
	base := filepath.Dir(dir)
	if err := makePrivateBase(base); err != nil {
		return "", nil, err
	}
	if c, err := net.Dial("unix", filepath.Join(dir, adminSocket)); err == nil {
		c.Close()
		return "", nil, fmt.Errorf("berth already serves an app named %s (its admin socket in %s answers): stop it, or give this one another --name", app, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, fmt.Errorf("runtime directory %s: remove what a berth that died left: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	if err := checkPrivateDir(dir, os.Geteuid()); err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// makePrivateBase makes base, the directory the apps' runtime directories
// go in, if it is missing, and checks it. Under the temp dir it must be
// berth's own (checkPrivateDir); elsewhere (/run/berth, made by root, or
// under $XDG_RUNTIME_DIR, which is the user's own 0700 directory) its
// parents are trusted, so it is made with MkdirAll.
func makePrivateBase(base string) error {
	if !inTempDir(base) {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return fmt.Errorf("runtime directory %s: %w", base, err)
		}
		return nil
	}
	// Mkdir, not MkdirAll: the temp dir exists, and an existing base is
	// checked, never trusted.
	if err := os.Mkdir(base, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("runtime directory %s: %w", base, err)
	}
	return checkPrivateDir(base, os.Geteuid())
}

// inTempDir reports whether dir is directly in the temp dir, where any
// user may create names.
func inTempDir(dir string) bool {
	return filepath.Dir(filepath.Clean(dir)) == filepath.Clean(os.TempDir())
}

// checkPrivateDir reports, as an error that says what to do, whether dir is
// unfit to hold berth's sockets: a symlink, not a directory, owned by
// another user than uid, or writable by others. A directory of uid's with
// group or other bits set is made 0700.
func checkPrivateDir(dir string, uid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	const fix = "remove it, or set XDG_RUNTIME_DIR to a directory of your own (mode 0700)"
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(dir)
		return fmt.Errorf("runtime directory %s is a symlink (to %s), refused: someone may have put it there to catch berth's sockets; %s", dir, target, fix)
	}
	if !fi.IsDir() {
		return fmt.Errorf("runtime directory %s is not a directory, refused; %s", dir, fix)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("runtime directory %s: cannot read its owner", dir)
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("runtime directory %s belongs to uid %d, not to you (uid %d), refused: another user may have made it to catch berth's sockets; %s", dir, st.Uid, uid, fix)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("runtime directory %s: make it private (0700): %w", dir, err)
		}
	}
	return nil
}

// runtimeBase is the directory that holds the runtime directories of the
// apps this user serves: /run/berth for root (the same place systemd's
// RuntimeDirectory= gives), $XDG_RUNTIME_DIR/berth for a user, else
// berth-UID in the temp dir. BERTH_RUNTIME_BASE, for tests, overrides it.
func runtimeBase() string {
	if d := os.Getenv("BERTH_RUNTIME_BASE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/berth"
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "berth")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("berth-%d", os.Geteuid()))
}

// appRuntimeDir is where a berth serving app keeps its sockets, in
// runtimeBase.
func appRuntimeDir(app string) string {
	return filepath.Join(runtimeBase(), app)
}
