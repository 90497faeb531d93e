// Package installtest is the end-to-end test of berth's Debian package on a
// real systemd: in a fresh container (packaging/systemdtest) it installs the
// .deb with apt, runs `berth init` on the example app, enables the app's
// socket, and checks that the app answers through berth, that berth's lines
// are in the journal and that the workers run as units; then it checks that
// `apt remove berth` stops everything berth started and that `apt purge
// berth` leaves no berth file behind but the app and the units berth init
// wrote. TestRPMInstallErase does the same with the .rpm (rpm -i, rpm -e),
// for the RPM scriptlets.
//
// It needs root, systemd-nspawn and what `make deb` and `make rpm` need
// (debhelper, rpm); it skips without them, or fails under
// BERTH_TEST_STRICT=1. It builds the packages unless BERTH_DEB and BERTH_RPM
// name ones already built.
package installtest
