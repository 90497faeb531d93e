package systemdtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

var shared Shared

func TestMain(m *testing.M) {
	if os.Getenv("SYSTEMDTEST_HELPER") == "greeter" {
		greet()
		return
	}
	// A host directory bound read-only into the shared container.
	bind, err := os.MkdirTemp("", "systemdtest-bind-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.WriteFile(bind+"/hello", []byte("from the host\n"), 0o644)
	shared.Config.Binds = []Bind{{Host: bind, Container: "/mnt/systemdtest-bind", ReadOnly: true}}
	code := m.Run()
	if err := shared.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.RemoveAll(bind)
	os.Exit(code)
}

func TestBoot(t *testing.T) {
	m := shared.Machine(t)

	t.Run("running", func(t *testing.T) {
		out := m.MustRun(t, "systemctl", "is-system-running")
		if got := strings.TrimSpace(out); got != "running" {
			t.Fatalf("is-system-running = %q, want running", got)
		}
		if got := strings.TrimSpace(m.MustRun(t, "hostname")); got != m.Name() {
			t.Errorf("hostname = %q, want the machine name %q", got, m.Name())
		}
	})

	t.Run("bind", func(t *testing.T) {
		if got := m.MustRun(t, "cat", "/mnt/systemdtest-bind/hello"); got != "from the host\n" {
			t.Errorf("bound file reads %q", got)
		}
		if _, err := m.Run(t.Context(), "touch", "/mnt/systemdtest-bind/x"); err == nil {
			t.Error("a read-only bind is writable")
		}
	})

	t.Run("exit status", func(t *testing.T) {
		if _, err := m.Run(t.Context(), "false"); err == nil {
			t.Fatal("Run(false) returned no error")
		}
	})

	t.Run("write file", func(t *testing.T) {
		const p = "/etc/berth-systemdtest/hello"
		if err := m.WriteFile(t.Context(), p, []byte("hi\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		if got := m.MustRun(t, "stat", "-c", "%a %s", p); strings.TrimSpace(got) != "640 3" {
			t.Errorf("stat %s = %q, want \"640 3\"", p, got)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s appeared on the host (stat err %v)", p, err)
		}
	})

	t.Run("copy file", func(t *testing.T) {
		src := t.TempDir() + "/script"
		if err := os.WriteFile(src, []byte("#!/bin/sh\necho copied\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := m.CopyFile(t.Context(), src, "/usr/local/bin/berth-systemdtest"); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(m.MustRun(t, "berth-systemdtest")); got != "copied" {
			t.Errorf("copied script printed %q", got)
		}
	})

	// A transient socket + service pair, the way the systemd spawner runs
	// a worker; the port answers from the host, which shares the network.
	t.Run("transient socket unit", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()

		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.CopyFile(t.Context(), self, "/usr/local/bin/systemdtest-helper"); err != nil {
			t.Fatal(err)
		}
		unit := fmt.Sprintf("systemdtest-greeter-%d", port)
		m.MustRun(t, "systemd-run", "--unit="+unit,
			"--socket-property=ListenStream=127.0.0.1:"+fmt.Sprint(port),
			"--setenv=SYSTEMDTEST_HELPER=greeter",
			"/usr/local/bin/systemdtest-helper")
		t.Cleanup(func() {
			m.Run(t.Context(), "systemctl", "stop", unit+".socket", unit+".service")
		})
		if got := m.MustRun(t, "systemctl", "is-active", unit+".socket"); strings.TrimSpace(got) != "active" {
			t.Fatalf("socket unit is %q", got)
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read from the socket-activated service: %v", err)
		}
		if line != "hello from fd 3, LISTEN_FDS=1\n" {
			t.Errorf("service said %q", line)
		}
	})
}

// greet is the service behind the transient socket unit: it accepts one
// connection on the inherited fd 3 and says what it was given.
func greet() {
	ln, err := net.FileListener(os.NewFile(3, "listen"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
	fmt.Fprintf(c, "hello from fd 3, LISTEN_FDS=%s\n", os.Getenv("LISTEN_FDS"))
	c.Close()
}

// TestBootClose boots a second, private container and checks that Close
// leaves nothing mounted or running.
func TestBootClose(t *testing.T) {
	need(t)
	ctx := t.Context()
	m, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := m.PID(), m.dir
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
		t.Errorf("container pid %d still exists after Close", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Close", dir)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), "berth-test") {
		t.Errorf("a berth-test mount is visible on the host:\n%s", mounts)
	}
}

func TestWaitJournal(t *testing.T) {
	m := shared.Machine(t)
	ctx := t.Context()
	// The line may be logged before or after WaitJournal starts; systemd's
	// own "Started" line quotes the command, so the marker is built by
	// printf.
	go m.Run(ctx, "systemd-run", "--unit=systemdtest-journal", "/bin/sh", "-c", "echo first; printf 'systemdtest-%s\\n' marker")
	out, err := m.WaitJournal(ctx, "systemdtest-marker", "-u", "systemdtest-journal.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "first\n") {
		t.Errorf("WaitJournal returned %q, want the earlier line too", out)
	}

	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := m.WaitJournal(short, "never logged", "-u", "systemdtest-journal.service"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitJournal for a missing line: %v, want a deadline error", err)
	}
}
