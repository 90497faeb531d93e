// Package buildtest holds the tests of berth's packages: that the version
// lives in one place (packaging/VERSION) and debian/changelog and
// rpm/berth.spec agree with it; that berth(1) and the bash completion cover
// every command and flag the binary has; that `make deb` and `make rpm`
// build, pass lintian and rpmlint, carry the same files byte for byte, hold
// a static binary that reports the version, and are reproducible.
//
// The package tests need dpkg-buildpackage, debhelper, lintian, rpmbuild and
// rpmlint (apt-get install debhelper lintian rpm rpmlint); without them they
// skip, or fail under BERTH_TEST_STRICT=1 (see packaging/testenv).
//
// The end-to-end install on a real systemd is in packaging/installtest.
package buildtest
