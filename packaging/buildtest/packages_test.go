package buildtest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"berth/packaging/testenv"
)

// built is the .deb and .rpm that `make deb rpm` made, shared by the tests
// of this package (one build, about 25 s on a warm Go cache).
type built struct {
	once sync.Once
	dir  string // DIST: holds the .deb, .changes and .rpm
	err  error
}

var pkgs built

func TestMain(m *testing.M) {
	code := m.Run()
	if pkgs.dir != "" {
		os.RemoveAll(pkgs.dir)
	}
	os.Exit(code)
}

// needPackaging skips (fails, under BERTH_TEST_STRICT=1) when the machine
// cannot build the packages.
func needPackaging(t *testing.T) {
	t.Helper()
	for _, c := range []string{"make", "dpkg-buildpackage", "dh", "rpmbuild", "go", "git"} {
		testenv.NeedCommand(t, c)
	}
}

// packages builds the packages once and returns the directory that holds
// them.
func packages(t *testing.T) string {
	t.Helper()
	needPackaging(t)
	pkgs.once.Do(func() {
		pkgs.dir, pkgs.err = os.MkdirTemp("", "berth-pkg-")
		if pkgs.err == nil {
			pkgs.err = makePackages(root, pkgs.dir, nil)
		}
	})
	if pkgs.err != nil {
		t.Fatal(pkgs.err)
	}
	return pkgs.dir
}

// makePackages runs `make deb rpm` in the tree src with DIST=dist and extra
// environment.
func makePackages(src, dist string, env []string) error {
	cmd := exec.Command("make", "-C", src, "deb", "rpm", "DIST="+dist)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make deb rpm DIST=%s: %w\n%s", dist, err, tailOf(out, 4000))
	}
	return nil
}

// one returns the single file in dir matching pattern.
func one(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("want one %s in %s, found %q (%v)", pattern, dir, m, err)
	}
	return m[0]
}

// entry is one file of a package's payload.
type entry struct {
	mode   string // ls-style permissions, e.g. -rwxr-xr-x
	sha256 string // of the content; for a symlink, of its target
}

func (e entry) String() string { return e.mode + " " + e.sha256[:12] }

// notPayload are the places where the two formats differ by design: Debian
// keeps the copyright and changelog in /usr/share/doc/berth and lintian
// overrides in /usr/share/lintian; RPM keeps the license in
// /usr/share/licenses.
var notPayload = []string{"/usr/share/doc/", "/usr/share/licenses/", "/usr/share/lintian/"}

func inPayload(path string) bool {
	return !slices.ContainsFunc(notPayload, func(p string) bool { return strings.HasPrefix(path, p) })
}

// debFiles reads the regular files and symlinks of a .deb.
func debFiles(t *testing.T, deb string) map[string]entry {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile %s: %v", deb, err)
	}
	files := map[string]entry{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", deb, err)
		}
		path := strings.TrimPrefix(h.Name, ".")
		sum := sha256.New()
		switch h.Typeflag {
		case tar.TypeReg:
			if _, err := io.Copy(sum, tr); err != nil {
				t.Fatalf("read %s in %s: %v", path, deb, err)
			}
		case tar.TypeSymlink:
			io.WriteString(sum, h.Linkname)
		default:
			continue
		}
		if h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s: %s is owned by %s:%s, want root:root", filepath.Base(deb), path, h.Uname, h.Gname)
		}
		files[path] = entry{mode: h.FileInfo().Mode().String(), sha256: hex.EncodeToString(sum.Sum(nil))}
	}
	return files
}

// rpmFiles reads the regular files and symlinks of an .rpm from its header.
func rpmFiles(t *testing.T, rpm string) map[string]entry {
	t.Helper()
	if out, err := exec.Command("rpm", "-qp", "--qf", "%{FILEDIGESTALGO}", rpm).Output(); err != nil || string(out) != "8" {
		t.Fatalf("%s: file digest algorithm %q (%v), want 8 (SHA-256)", rpm, out, err)
	}
	out, err := exec.Command("rpm", "-qp", "--qf",
		`[%{FILEMODES:perms} %{FILEDIGESTS} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILELINKTOS} %{FILENAMES}\n]`, rpm).Output()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v", rpm, err)
	}
	files := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		// A regular file has a digest and no link target; a symlink the
		// reverse; a directory neither.
		var mode, digest, owner, link, path string
		switch len(f) {
		case 5:
			mode, digest, owner, link, path = f[0], f[1], f[2], f[3], f[4]
		case 4:
			mode, digest, owner, path = f[0], f[1], f[2], f[3]
			if strings.HasPrefix(mode, "l") {
				link, digest = digest, ""
			}
		default:
			mode, owner, path = f[0], f[1], f[len(f)-1]
		}
		if owner != "root:root" {
			t.Errorf("%s: %s is owned by %s, want root:root", filepath.Base(rpm), path, owner)
		}
		switch mode[0] {
		case '-':
			files[path] = entry{mode: mode, sha256: digest}
		case 'l':
			s := sha256.Sum256([]byte(link))
			files[path] = entry{mode: mode, sha256: hex.EncodeToString(s[:])}
		}
	}
	return files
}

// TestSamePayload checks that the .deb and the .rpm install the same files,
// with the same modes and the same bytes.
func TestSamePayload(t *testing.T) {
	dist := packages(t)
	v := version(t)
	deb := debFiles(t, one(t, dist, "berth_"+v+"_*.deb"))
	rpm := rpmFiles(t, one(t, dist, "berth-"+v+"-*.rpm"))

	for _, want := range []string{"/usr/bin/berth", "/usr/share/man/man1/berth.1.gz",
		"/usr/share/bash-completion/completions/berth", "/etc/berth/berth.json.example",
		"/usr/libexec/berth/maint"} {
		if _, ok := deb[want]; !ok {
			t.Errorf("the .deb lacks %s", want)
		}
	}
	for path, d := range deb {
		if !inPayload(path) {
			continue
		}
		r, ok := rpm[path]
		switch {
		case !ok:
			t.Errorf("%s is in the .deb, not in the .rpm", path)
		case d != r:
			t.Errorf("%s differs: .deb %s, .rpm %s", path, d, r)
		}
	}
	for path := range rpm {
		if _, ok := deb[path]; !ok && inPayload(path) {
			t.Errorf("%s is in the .rpm, not in the .deb", path)
		}
	}
	if t.Failed() {
		t.Logf(".deb: %v\n.rpm: %v", deb, rpm)
	}
}

// TestPackageMetadata checks what the package managers see: the
// dependencies, the conffile, the maintainer scripts.
func TestPackageMetadata(t *testing.T) {
	dist := packages(t)
	v := version(t)
	deb := one(t, dist, "berth_"+v+"_*.deb")
	rpm := one(t, dist, "berth-"+v+"-*.rpm")

	field := func(name string) string {
		out, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s %s: %v", deb, name, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := field("Version"); got != v {
		t.Errorf(".deb Version: %q, want %q", got, v)
	}
	if got := field("Recommends"); got != "nodejs" {
		t.Errorf(".deb Recommends: %q, want nodejs (berth serves non-Node apps too)", got)
	}
	if got := field("Depends"); got != "" {
		t.Errorf(".deb Depends: %q, want none (a static binary)", got)
	}

	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	conffiles, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/berth/berth.json.example" {
		t.Errorf(".deb conffiles: %q, want /etc/berth/berth.json.example", conffiles)
	}
	for script, want := range map[string]string{
		"prerm":    "/usr/libexec/berth/maint stop-all",
		"postinst": "/usr/libexec/berth/maint restart-all",
		"postrm":   "rmdir /run/berth",
	} {
		b, err := os.ReadFile(filepath.Join(ctl, script))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf(".deb %s does not run %q (%v)", script, want, err)
		}
	}

	q := func(format string) string {
		out, err := exec.Command("rpm", "-qp", "--qf", format, rpm).Output()
		if err != nil {
			t.Fatalf("rpm -qp --qf %s: %v", format, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := q("%{VERSION}"); got != v {
		t.Errorf(".rpm VERSION %q, want %q", got, v)
	}
	if got := q("[%{RECOMMENDNAME}\n]"); got != "nodejs" {
		t.Errorf(".rpm Recommends %q, want nodejs", got)
	}
	if got := q(`[%{FILEFLAGS:fflags} %{FILENAMES}\n]`); !strings.Contains(got, "cn /etc/berth/berth.json.example") {
		t.Errorf(".rpm: /etc/berth/berth.json.example is not %%config(noreplace):\n%s", got)
	}
	scripts := q("%{PREUN}\n---\n%{POSTIN}\n---\n%{POSTUN}")
	for _, want := range []string{"maint stop-all", "maint restart-all", "rmdir /run/berth"} {
		if !strings.Contains(scripts, want) {
			t.Errorf(".rpm scriptlets do not run %q:\n%s", want, scripts)
		}
	}
}

// TestPackagedBinary checks the berth inside the .deb: static, stripped, and
// stamped with packaging/VERSION.
func TestPackagedBinary(t *testing.T) {
	dist := packages(t)
	v := version(t)
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", one(t, dist, "berth_"+v+"_*.deb"), dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "usr/bin/berth")
	if got := strings.TrimSpace(run(t, bin, "version")); got != "berth "+v {
		t.Errorf("packaged berth version says %q, want %q", got, "berth "+v)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("packaged berth has a %v segment: not a static binary", p.Type)
		}
	}
	if s := f.Section(".symtab"); s != nil {
		t.Error("packaged berth has a symbol table: not linked with -s")
	}
	if s := f.Section(".debug_info"); s != nil {
		t.Error("packaged berth has DWARF: not linked with -w")
	}

	// debian/copyright names every module linked into the binary, with
	// its licence (the .rpm ships the same file as %license).
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("packaged berth: %v", err)
	}
	copyright := readRoot(t, "debian/copyright")
	for _, d := range bi.Deps {
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(d.Path) + `\s+\S`).MatchString(copyright) {
			t.Errorf("debian/copyright does not list %s, which the packaged berth links: add it with its licence", d.Path)
		}
	}
}

func TestLintian(t *testing.T) {
	lintian := testenv.NeedCommand(t, "lintian")
	dist := packages(t)
	changes := one(t, dist, "berth_"+version(t)+"_*.changes")
	out, err := exec.Command(lintian, "--fail-on", "error,warning", changes).CombinedOutput()
	if err != nil {
		t.Errorf("lintian %s: %v\n%s", filepath.Base(changes), err, out)
	}
	// lintian prints nothing but a note about running as root when clean.
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "root privileges") {
			t.Errorf("lintian: %s", line)
		}
	}
}

func TestRpmlint(t *testing.T) {
	rpmlint := testenv.NeedCommand(t, "rpmlint")
	dist := packages(t)
	rpm := one(t, dist, "berth-"+version(t)+"-*.rpm")
	out, err := exec.Command(rpmlint, "--config", filepath.Join(root, "rpm/rpmlint.toml"),
		filepath.Join(root, "rpm/berth.spec"), rpm).CombinedOutput()
	if err != nil {
		t.Errorf("rpmlint: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), " 0 errors, 0 warnings") {
		t.Errorf("rpmlint reports findings:\n%s", out)
	}
}

// TestReproducible builds the packages twice from one copy of the sources,
// in two trees, the second time with an empty Go build cache, and wants the
// same bytes. (A copy, because the work tree may change between the builds.)
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("two builds, one with a cold Go cache, take a minute")
	}
	needPackaging(t)
	src := filepath.Join(t.TempDir(), "berth")
	if out, err := exec.Command("make", "-C", root, "src-tree", "DEST="+src).CombinedOutput(); err != nil {
		t.Fatalf("make src-tree: %v\n%s", err, out)
	}
	first, second := t.TempDir(), t.TempDir()
	if err := makePackages(src, first, nil); err != nil {
		t.Fatal(err)
	}
	if err := makePackages(src, second, []string{"GOCACHE=" + t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	v := version(t)
	for _, pattern := range []string{"berth_" + v + "_*.deb", "berth-" + v + "-*.rpm"} {
		a, b := one(t, first, pattern), one(t, second, pattern)
		if sa, sb := sum(t, a), sum(t, b); sa != sb {
			t.Errorf("%s is not reproducible: %s then %s", filepath.Base(a), sa, sb)
		} else {
			t.Logf("%s %s", sa, filepath.Base(a))
		}
	}
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tailOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
