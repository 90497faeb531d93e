package spawner

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReadinessCredentials sends READY=1 over both sockets, as the Node
// loader and an sd_notify app do, and wants this process's pid recorded.
func TestReadinessCredentials(t *testing.T) {
	dir := t.TempDir()
	r, err := ListenReadiness(filepath.Join(dir, "w1.ready"), filepath.Join(dir, "w1.notify"), os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, p := range []string{r.StreamPath, r.DgramPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", p, fi.Mode().Perm())
		}
	}
	waitPid := func(what string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			pids, changed := r.ReadyFrom()
			if pids[os.Getpid()] {
				return
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("%s: pid %d not recorded; have %v", what, os.Getpid(), pids)
			}
		}
	}

	// A message that is not READY=1 records nothing.
	c, err := net.Dial("unix", r.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("STATUS=starting\n"))
	c.Close()

	c, err = net.Dial("unix", r.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("READY=1\n"))
	c.Close()
	waitPid("stream")

	// The datagram socket: a fresh listener, so the stream's record does
	// not count.
	r.Close()
	r, err = ListenReadiness(filepath.Join(dir, "w2.ready"), filepath.Join(dir, "w2.notify"), os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	d, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: r.DgramPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("STATUS=up\nREADY=1"))
	d.Close()
	waitPid("datagram")
}
