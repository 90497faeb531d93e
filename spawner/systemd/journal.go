package systemd

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// journalTail returns the last n lines the unit's processes wrote to the
// journal since since (the app's output, not systemd's or berth's messages
// about the unit), oldest first.
func journalTail(ctx context.Context, unit string, since time.Time, n int) []string {
	out, err := exec.CommandContext(ctx, "journalctl", "_SYSTEMD_UNIT="+unit, "--since=@"+strconv.FormatInt(since.Unix(), 10),
		"--lines="+strconv.Itoa(n), "--output=cat", "--no-pager", "--quiet").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

// tail quotes what the unit's processes wrote since since, for an error.
func (b *Backend) tail(unit string, since time.Time) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	lines := b.cfg.Journal(ctx, unit, since, b.cfg.TailLines)
	if len(lines) == 0 {
		return fmt.Sprintf(" (it printed nothing; see journalctl -u %s)", unit)
	}
	return fmt.Sprintf("; its last output (journalctl -u %s):\n    %s", unit, strings.Join(lines, "\n    "))
}
