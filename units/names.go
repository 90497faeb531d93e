package units

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest app name accepted: short enough that every unit
// name built from it stays far below systemd's 255-byte limit.
const MaxNameLen = 64

// ErrName is wrapped by the errors of CheckName.
var ErrName = errors.New("units: invalid app name")

// CheckName reports why app cannot name an app's units, or nil. An app name
// is what `berth init --name` and `berth serve --name` take: it names the
// app's own units (NAME.service, NAME.socket) and its workers' units. It may
// hold ASCII letters, digits, '_', '.', ':' and '-', must start with a
// letter or digit, and is at most MaxNameLen bytes.
func CheckName(app string) error {
	if app == "" {
		return fmt.Errorf("%w: empty (give one with --name)", ErrName)
	}
	if len(app) > MaxNameLen {
		return fmt.Errorf("%w %q: longer than %d bytes", ErrName, app, MaxNameLen)
	}
	if !isAlnum(app[0]) {
		return fmt.Errorf("%w %q: must start with a letter or digit", ErrName, app)
	}
	for i := 0; i < len(app); i++ {
		c := app[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != ':' && c != '-' {
			return fmt.Errorf("%w %q: %q is not allowed in a unit name (use letters, digits, '_', '.', ':' or '-')", ErrName, app, string(rune(c)))
		}
	}
	return nil
}

// CheckWorker reports why worker cannot name a worker ("w1", "w2", …), or
// nil: it must be a lower-case letter followed by letters or digits.
func CheckWorker(worker string) error {
	ok := worker != "" && len(worker) <= 16 && worker[0] >= 'a' && worker[0] <= 'z'
	for i := 0; ok && i < len(worker); i++ {
		ok = isAlnum(worker[i])
	}
	if !ok {
		return fmt.Errorf("units: invalid worker name %q (want a letter then letters or digits, like w1)", worker)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// escape turns a checked app name into a unit name part with no '-': systemd
// reads '-' in a slice name as a level of hierarchy, and worker unit globs
// must not match another app whose name extends this one. Like
// systemd-escape, '-' becomes `\x2d`.
func escape(app string) string {
	return strings.ReplaceAll(app, "-", `\x2d`)
}

// Service returns the name of the app's own service unit, NAME.service:
// berth itself, as written by `berth init`. app must pass CheckName.
func Service(app string) string { return app + ".service" }

// Socket returns the name of the app's public socket unit, NAME.socket.
func Socket(app string) string { return app + ".socket" }

// Slice returns the slice that holds the app's workers, berth-APP.slice
// (under berth.slice). A '-' in app is escaped, so "my-app" gives
// `berth-my\x2dapp.slice`.
func Slice(app string) string { return "berth-" + escape(app) + ".slice" }

// WorkerService returns the unit name of one worker's transient service,
// berth-APP-WORKER.service, e.g. berth-myapp-w1.service. A '-' in app is
// escaped as in Slice.
func WorkerService(app, worker string) string {
	return "berth-" + escape(app) + "-" + worker + ".service"
}

// WorkerSocket returns the unit name of one worker's transient socket,
// berth-APP-WORKER.socket.
func WorkerSocket(app, worker string) string {
	return "berth-" + escape(app) + "-" + worker + ".socket"
}

// WorkerGenService returns the unit name of generation gen of one
// worker's transient service. Generation 1 (or 0) is WorkerService's name;
// a later one, made while the one before still serves (a rolling restart
// makes the new worker's units next to the old one's), adds "-gGEN":
// berth-APP-WORKER-g2.service. A worker name has no '-' (CheckWorker), so
// no worker's names are another's.
func WorkerGenService(app, worker string, gen int) string {
	return workerGen(app, worker, gen) + ".service"
}

// WorkerGenSocket returns the unit name of generation gen of one worker's
// transient socket: WorkerSocket's name for generation 1 (or 0),
// berth-APP-WORKER-gGEN.socket after.
func WorkerGenSocket(app, worker string, gen int) string {
	return workerGen(app, worker, gen) + ".socket"
}

// WorkerGen returns the part that generation gen adds to a worker's names:
// "" for generation 1 (or 0), "-gGEN" after. The systemd back end names
// the generation's runtime files with it too (w1-g2.sock).
func WorkerGen(gen int) string {
	if gen <= 1 {
		return ""
	}
	return fmt.Sprintf("-g%d", gen)
}

func workerGen(app, worker string, gen int) string {
	return "berth-" + escape(app) + "-" + worker + WorkerGen(gen)
}

// WorkerPatterns returns shell-style patterns (for ListUnitsByPatterns and
// `systemctl list-units`, which match with FNM_NOESCAPE) matching the
// units of every generation of one worker of app, and no other worker's.
func WorkerPatterns(app, worker string) []string {
	base := "berth-" + escape(app) + "-" + worker
	return []string{base + ".service", base + ".socket", base + "-g*.service", base + "-g*.socket"}
}

// WorkerGlob returns a shell-style pattern matching the units of all of the
// app's workers (services and sockets) and no other app's, for
// `journalctl -u` and `systemctl list-units`. Both match with
// FNM_NOESCAPE, so the backslash of an escaped '-' stands for itself.
func WorkerGlob(app string) string {
	return "berth-" + escape(app) + "-*"
}
