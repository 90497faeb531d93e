package systemd

import (
	"os"
	"strconv"
	"strings"
)

// inUnit reports whether process pid runs in the control group of unit
// (a line of /proc/PID/cgroup ends in "/UNIT").
func inUnit(pid int, unit string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(line, "/"+unit) {
			return true
		}
	}
	return false
}
