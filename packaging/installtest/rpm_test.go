package installtest

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"berth/packaging/systemdtest"
	"berth/packaging/testenv"
	"berth/units"
)

// TestRPMInstallErase installs the .rpm in a fresh container with rpm
// itself (Debian's rpm keeps its own database, so --nodeps), serves the app
// through it and erases it: the %preun scriptlet must stop everything berth
// started, and nothing named berth may stay but the app and its units.
func TestRPMInstallErase(t *testing.T) {
	testenv.NeedRoot(t)
	rpm := rpmPackage(t)
	version := strings.TrimSpace(readRoot(t, "packaging/VERSION"))

	m := systemdtest.Boot(t, systemdtest.Config{})
	testenv.Need(t, m.MustRun(t, "sh", "-c", "command -v rpm || true") != "", "rpm not installed (apt-get install rpm)")
	before := berthPaths(t, m)
	port := testenv.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"

	installed := t.Run("rpm -i", func(t *testing.T) {
		dir := "/tmp/berth-install"
		pkg := dir + "/" + filepath.Base(rpm)
		if err := m.CopyFile(t.Context(), rpm, pkg); err != nil {
			t.Fatal(err)
		}
		m.MustRun(t, "rpm", "-i", "--nodeps", pkg)
		m.MustRun(t, "rm", "-rf", dir)
		if got := strings.TrimSpace(m.MustRun(t, "berth", "version")); got != "berth "+version {
			t.Errorf("berth version says %q, want %q", got, "berth "+version)
		}
		mustExist(t, m, "/etc/berth/berth.json.example", "/usr/share/man/man1/berth.1.gz", "/usr/libexec/berth/maint")
	})
	if !installed {
		t.Fatal("berth is not installed; nothing else can be checked")
	}

	t.Run("berth init", func(t *testing.T) { initApp(t, m, port) })
	t.Run("systemctl enable --now", func(t *testing.T) { enableApp(t, m, url) })
	t.Run("worker units", func(t *testing.T) {
		if got := active(t, m, units.WorkerService(app, "w1")); got != "active" {
			t.Errorf("%s is %s, want active", units.WorkerService(app, "w1"), got)
		}
	})

	t.Run("rpm -e", func(t *testing.T) {
		m.MustRun(t, "rpm", "-e", "berth")
		assertStopped(t, m, port)
		mustNotExist(t, m, "/usr/bin/berth", "/run/berth", "/etc/berth")
		mustExist(t, m, userFiles()...)
		assertNoBerthFiles(t, m, before)
	})
}

// rpmPackage returns the .rpm to install: $BERTH_RPM, or one `make rpm`
// builds now.
func rpmPackage(t *testing.T) string {
	return buildPackage(t, "rpm", "BERTH_RPM", "berth-*.rpm", "rpmbuild")
}
