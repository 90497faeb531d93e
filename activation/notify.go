package activation

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends service state to systemd (sd_notify). When berth is not
// under systemd (NOTIFY_SOCKET unset) every method does nothing and reports
// false. The zero value is not usable; use NewNotifier.
type Notifier struct {
	send func(state string) (bool, error)
	log  *slog.Logger

	mu         sync.Mutex // protects lastStatus, failedOnce
	lastStatus string
	failedOnce bool
}

// NewNotifier returns a Notifier that writes to $NOTIFY_SOCKET. log may be
// nil; a failing socket is logged once.
func NewNotifier(log *slog.Logger) *Notifier {
	return newNotifier(func(state string) (bool, error) { return daemon.SdNotify(false, state) }, log)
}

func newNotifier(send func(string) (bool, error), log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{send: send, log: log}
}

func (n *Notifier) notify(state string) bool {
	ok, err := n.send(state)
	if err != nil {
		n.mu.Lock()
		first := !n.failedOnce
		n.failedOnce = true
		n.mu.Unlock()
		if first {
			n.log.Warn("sd_notify failed; further failures are not logged", "state", strings.TrimSpace(state), "err", err)
		}
	}
	return ok
}

// Ready tells systemd the service is up (READY=1), with a status line.
func (n *Notifier) Ready(status string) bool {
	return n.notify("READY=1\nSTATUS=" + oneLine(status))
}

// Reloading tells systemd a reload (rolling restart) began. Send Ready when
// it is over.
func (n *Notifier) Reloading() bool {
	return n.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
}

// Stopping tells systemd the service is shutting down.
func (n *Notifier) Stopping() bool { return n.notify("STOPPING=1") }

// Status sets the free-form status `systemctl status` shows. An unchanged
// status is not sent again.
func (n *Notifier) Status(status string) bool {
	status = oneLine(status)
	n.mu.Lock()
	same := status == n.lastStatus
	n.lastStatus = status
	n.mu.Unlock()
	if same {
		return false
	}
	return n.notify("STATUS=" + status)
}

// Watchdog pings systemd's watchdog every half WatchdogSec while healthy
// reports true, until ctx is done. It returns at once when no watchdog is
// configured. healthy may be nil (always healthy).
func (n *Notifier) Watchdog(ctx context.Context, healthy func() bool) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if healthy == nil || healthy() {
				n.notify("WATCHDOG=1")
			}
		}
	}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
