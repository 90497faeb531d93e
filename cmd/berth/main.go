// Command berth is a systemd-native application server: it serves a Node.js
// app (or any HTTP app that can take a socket) on several workers behind one
// port, supervises them, and hands systemd what systemd does best.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"berth/cmd/berth/logging"
	"berth/spawner"
)

const usage = `usage: berth COMMAND [ARGS]

Commands:
  serve [APP_DIR]   serve the app on several workers behind one port
  status [NAME]     list the apps running here, or show one app's workers (--json)
  restart [NAME]    restart the workers one by one, without dropping requests
  drain [NAME]      tell the load balancer to stop sending (/readyz, agent); keep serving
  undrain [NAME]    reverse a drain
  metrics [NAME]    print the Prometheus metrics of a running berth
  cache purge [NAME] [PATH-PREFIX]
                    drop the app's cached responses (under PATH-PREFIX)
  init APP_DIR --name NAME --port N
                    write NAME.socket and NAME.service for systemd (--listen ADDR)
  logs NAME [-f]    show berth's and its workers' logs from the journal
  version           print berth's version
  help              print this help

Run 'berth COMMAND -h' for a command's synopsis and flags; man berth for all.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case spawner.TrampolineArg:
		err := spawner.RunTrampoline(args[1:])
		fmt.Fprintf(stderr, "berth: %v\n", err)
		return 127
	case "serve":
		return runServe(args[1:], stderr)
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "restart":
		return runRestart(args[1:], stdout, stderr)
	case "drain", "undrain":
		return runDrain(args[0], args[1:], stdout, stderr)
	case "metrics":
		return runMetrics(args[1:], stdout, stderr)
	case "cache":
		return runCache(args[1:], stdout, stderr)
	case "init":
		return runInit(args[1:], stdout, stderr)
	case "logs":
		return runLogs(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "berth", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "berth: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// newLogger builds berth's logger: text on stderr, or journald's native
// protocol with structured fields when stderr is the journal.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return logging.New(w, l, os.Getenv)
}
