package activation

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestNotifierMessages(t *testing.T) {
	var sent []string
	n := newNotifier(func(s string) (bool, error) { sent = append(sent, s); return true, nil }, nil)
	n.Ready("2/2 workers\nready")
	n.Status("busy")
	n.Status("busy") // unchanged: not sent again
	n.Reloading()
	n.Stopping()
	if len(sent) != 4 {
		t.Fatalf("sent %q", sent)
	}
	if sent[0] != "READY=1\nSTATUS=2/2 workers ready" || sent[1] != "STATUS=busy" || !strings.HasPrefix(sent[2], "RELOADING=1\nMONOTONIC_USEC=") || sent[3] != "STOPPING=1" {
		t.Errorf("sent %q", sent)
	}
}

func TestNotifierNotUnderSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if NewNotifier(nil).Ready("x") {
		t.Error("Ready reported true without NOTIFY_SOCKET")
	}
	calls := 0
	n := newNotifier(func(string) (bool, error) { calls++; return false, errors.New("gone") }, nil)
	n.Stopping()
	n.Stopping()
	if calls != 2 || !n.failedOnce {
		t.Errorf("calls %d failedOnce %v", calls, n.failedOnce)
	}
}

func TestNotifierWritesNotifySocket(t *testing.T) {
	path := t.TempDir() + "/notify"
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if !NewNotifier(nil).Ready("up") {
		t.Fatal("Ready reported false with a NOTIFY_SOCKET")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, _, err := c.ReadFromUnix(buf)
	if err != nil || string(buf[:n]) != "READY=1\nSTATUS=up" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
}
