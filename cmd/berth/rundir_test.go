package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/packaging/testenv"
)

// TestPrivateBaseInTemp: in the temp dir, berth makes its base 0700,
// tightens one of its own, and refuses a symlink.
func TestPrivateBaseInTemp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	base := filepath.Join(tmp, fmt.Sprintf("berth-%d", os.Geteuid()))

	if err := makePrivateBase(base); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(base); err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Fatalf("base %v, %v; want a 0700 directory", fi.Mode(), err)
	}
	os.Chmod(base, 0o777)
	if err := makePrivateBase(base); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(base); fi.Mode().Perm() != 0o700 {
		t.Errorf("an open base of ours is left %v, want 0700", fi.Mode().Perm())
	}

	os.Remove(base)
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, base); err != nil {
		t.Fatal(err)
	}
	err := makePrivateBase(base)
	if err == nil || !strings.Contains(err.Error(), "is a symlink (to "+elsewhere+"), refused") || !strings.Contains(err.Error(), "XDG_RUNTIME_DIR") {
		t.Errorf("symlinked base: %v", err)
	}
}

// TestRuntimeDirOfAnotherUser: a user without XDG_RUNTIME_DIR serves an
// app while another local user made (or symlinked) /tmp/berth-UID first:
// berth refuses it and says why. Run as two real users (uids 65534 and
// 4242), which needs root.
func TestRuntimeDirOfAnotherUser(t *testing.T) {
	testenv.NeedRoot(t)
	const mallory, victim = 65534, 4242
	shared, err := os.MkdirTemp("", "berth-users-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	tmp := filepath.Join(shared, "tmp")
	app := filepath.Join(shared, "app")
	for _, d := range []string{tmp, app} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(shared, 0o755)
	os.Chmod(tmp, 0o1777) // a temp dir everyone writes to, as /tmp
	os.WriteFile(filepath.Join(app, "app.js"), []byte("require('http').createServer((q, s) => s.end('hi')).listen(3000)\n"), 0o644)
	bin := filepath.Join(shared, "berth")
	data, err := os.ReadFile(berthBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(uid int, name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "TMPDIR=" + tmp, "HOME=" + tmp}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		return cmd
	}
	base := filepath.Join(tmp, fmt.Sprintf("berth-%d", victim))
	serve := func() (int, string) {
		var stderr bytes.Buffer
		cmd := as(victim, bin, "serve", app, "--name", "shop", "--listen", "127.0.0.1:0", "--workers", "1", "--spawn-timeout", "1s")
		cmd.Stderr = &stderr
		// Without the check, berth would serve on: stop it.
		cmd.WaitDelay = time.Second
		timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		err := cmd.Run()
		return exitCode(err), stderr.String()
	}

	// The other user makes the directory first.
	if out, err := as(mallory, "mkdir", "-m", "0777", base).CombinedOutput(); err != nil {
		t.Fatalf("mkdir as uid %d: %v\n%s", mallory, err, out)
	}
	code, stderr := serve()
	want := fmt.Sprintf("runtime directory %s belongs to uid %d, not to you (uid %d), refused", base, mallory, victim)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("serve with another user's %s: exit %d, stderr:\n%s\nwant exit 1 and %q", base, code, stderr, want)
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Errorf("berth made %d entries in the other user's directory", len(ents))
	}

	// Or a symlink to a directory of theirs.
	os.Remove(base)
	trap := filepath.Join(tmp, "trap")
	if out, err := as(mallory, "sh", "-c", "mkdir -m 0777 "+trap+" && ln -s "+trap+" "+base).CombinedOutput(); err != nil {
		t.Fatalf("symlink as uid %d: %v\n%s", mallory, err, out)
	}
	code, stderr = serve()
	if code != 1 || !strings.Contains(stderr, "runtime directory "+base+" is a symlink (to "+trap+"), refused") {
		t.Errorf("serve with a symlinked %s: exit %d, stderr:\n%s", base, code, stderr)
	}
	if ents, _ := os.ReadDir(trap); len(ents) != 0 {
		t.Errorf("berth made %d entries through the symlink", len(ents))
	}

	// Once the name is free, the user's berth makes it, 0700, its own; and
	// root's berth status lists that user's app too.
	testenv.NeedCommand(t, "node")
	os.Remove(base)
	cmd := as(victim, bin, "serve", app, "--name", "shop", "--listen", "127.0.0.1:0", "--workers", "1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("berth as uid %d:\n%s", victim, out.String())
		}
	}()
	waitUntil(t, 20*time.Second, "root's berth status lists uid 4242's app", func() bool {
		status := exec.Command(bin, "status") // as root
		status.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "TMPDIR=" + tmp}
		table, _ := status.Output()
		return regexp.MustCompile(`(?m)^shop +4242 +running +1/1 `).Match(table)
	})
	fi, err := os.Lstat(base)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || fi.Mode().Perm() != 0o700 || st.Uid != victim {
		t.Errorf("%s: %v owned by %d; want a 0700 directory of uid %d", base, fi.Mode(), st.Uid, victim)
	}
}
