package systemd

import "strings"

// workerEnviron is berth's environment without what systemd set for berth
// itself (its sockets, its invocation, its directories, its user).
func workerEnviron(env []string) []string {
	drop := map[string]bool{
		"NOTIFY_SOCKET": true, "LISTEN_PID": true, "LISTEN_FDS": true, "LISTEN_FDNAMES": true,
		"INVOCATION_ID": true, "JOURNAL_STREAM": true, "WATCHDOG_PID": true, "WATCHDOG_USEC": true,
		"RUNTIME_DIRECTORY": true, "STATE_DIRECTORY": true, "CACHE_DIRECTORY": true, "LOGS_DIRECTORY": true,
		"CONFIGURATION_DIRECTORY": true, "CREDENTIALS_DIRECTORY": true, "MAINPID": true, "MANAGERPID": true,
		"SYSTEMD_EXEC_PID": true, "PIDFILE": true, "USER": true, "LOGNAME": true, "HOME": true, "SHELL": true,
		"BERTH_READY_SOCKET": true, "BERTH_APP": true, "BERTH_WORKER": true,
	}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && !strings.HasPrefix(k, "TRIGGER_") && !strings.HasPrefix(k, "MONITOR_") {
			out = append(out, kv)
		}
	}
	return out
}
