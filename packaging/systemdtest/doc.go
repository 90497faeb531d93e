// Package systemdtest boots a throwaway real systemd for tests: a
// systemd-nspawn container over a copy-on-write overlay of the host's root
// filesystem, so everything installed on the host (Go, node, systemd,
// dbus) is there without building an image.
//
// Use it from a test that needs systemd as PID 1 (socket activation,
// transient units over D-Bus, journald):
//
//	func TestSomething(t *testing.T) {
//		m := systemdtest.Boot(t, systemdtest.Config{})
//		if err := m.CopyFile(t.Context(), hostBinary, "/usr/local/bin/berth"); err != nil {
//			t.Fatal(err)
//		}
//		out := m.MustRun(t, "systemctl", "start", "hello.socket")
//		...
//	}
//
// Boot skips the test on a laptop (not root, or no systemd-nspawn) and fails
// it under BERTH_TEST_STRICT=1 (see package testenv). It returns once the
// container's systemd reports "running", and registers a t.Cleanup that
// powers the container off and waits for it, whether the test passed or not.
//
// A boot costs about three seconds of a core. To share one container between
// the tests of a package, keep a Shared in the test package and close it from
// TestMain:
//
//	var machine systemdtest.Shared // boots on first use
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		if err := machine.Close(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			code = 1
//		}
//		os.Exit(code)
//	}
//
//	func TestA(t *testing.T) { m := machine.Machine(t); ... }
//
// # What the container is
//
//   - Its root is an overlay: the host's root filesystem (only that
//     filesystem: not /proc, /sys, /dev, nor any other mount such as a
//     separate /tmp or /home) read-only underneath, writes going to a tmpfs.
//     Nothing written inside reaches the host. Host files created after the
//     boot may or may not show through; bring files in with WriteFile or
//     CopyFile, or name them in Config.Binds.
//   - The tmpfs and the overlay are mounted in a private mount namespace
//     (unshare), so the host never sees them mounted, and they vanish with
//     the container even if the test binary is killed: systemd-nspawn runs
//     with a parent-death signal that powers the container off. (Linux
//     sends that signal when the OS thread that started it exits, so do
//     not boot from a goroutine that called runtime.LockOSThread and exits
//     locked.) Only the empty mount point, a directory in the temp dir, is
//     left behind then.
//   - It boots berth-test.target (basic.target plus D-Bus and journald), not
//     the host's default target, so the host's enabled services (databases,
//     getty) do not start.
//   - It shares the host's network namespace: a port bound inside answers on
//     the host's loopback, and tests must pick ports that do not clash.
//   - The machine name (also its hostname) is unique per boot; the container
//     is not registered with systemd-machined.
//
// # Running commands
//
// Command, Run and MustRun run a command inside the container with
// nsenter(1) into all of its namespaces, as root, with a clean environment
// (PATH, HOME=/root, LANG=C.UTF-8, SYSTEMD_PAGER=, SYSTEMD_COLORS=0); the
// host's environment is not passed on. Their exit status is the command's.
//
// When a command's context ends, its whole process group is killed (nsenter
// forks to enter the pid namespace, so killing nsenter alone would leave the
// command running).
//
// WaitJournal polls `journalctl --output=cat ARGS…` until a line contains a
// string, for checking what a service logged: journald stores output
// asynchronously, and `journalctl --follow` in systemd 252 can miss a unit
// that had no entries when it started.
//
// WriteFile and CopyFile bring files in (written from inside, so paths
// resolve as the container sees them). PID reports the host pid of the
// container's systemd, for tests that need /proc/PID/... (the container's
// files are under /proc/PID/root, its system bus socket at
// /proc/PID/root/run/dbus/system_bus_socket) or nsenter themselves.
package systemdtest
