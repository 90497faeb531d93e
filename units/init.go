package units

import (
	"bytes"
	"embed"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// DefaultBerth is the berth binary named in ExecStart when Init.Berth is
// empty: where the .deb and .rpm install it.
const DefaultBerth = "/usr/bin/berth"

// Init describes the unit pair that `berth init` writes for one app: a
// socket unit NAME.socket holding the public port and a Type=notify service
// NAME.service running `berth serve APP_DIR --name NAME`.
type Init struct {
	// Name is the app name (see CheckName); the units are NAME.socket and
	// NAME.service.
	Name string
	// AppDir is the app's root directory, an absolute path.
	AppDir string
	// Port is the TCP port the socket listens on, on all addresses (IPv4
	// and IPv6), when Listen is empty.
	Port int
	// Listen are the socket's addresses, one ListenStream= each:
	// "host:port" ("127.0.0.1:8080", "[::1]:8080"), a port number, or a
	// Unix socket path ("/run/shop.sock" or "unix:/run/shop.sock"). If
	// empty, Port on all addresses.
	Listen []string
	// Berth is the absolute path of the berth binary. If empty, DefaultBerth.
	Berth string
	// ServeArgs are more arguments for `berth serve`, appended to ExecStart
	// (e.g. "--workers", "4"). If empty, none: berth.json in the app
	// directory is the place for per-app settings.
	ServeArgs []string
	// UserManager renders units for a user's own manager (`systemctl
	// --user`, installed in ~/.config/systemd/user) instead of the system
	// manager: no privileges, berth forking its workers itself (--spawner
	// exec), and only the sandboxing a user manager can apply.
	UserManager bool
	// TLS are certificate and key files (absolute paths) given to berth
	// as systemd credentials: a LoadCredential= line each
	// (tls-N.crt, tls-N.key) and the matching --tls-cert tls-N.crt
	// --tls-key tls-N.key, which berth finds in $CREDENTIALS_DIRECTORY.
	// Root-only key files work: systemd reads them, berth gets a copy.
	TLS []TLSPair
}

// TLSPair is one certificate chain file and its key file.
type TLSPair struct {
	Cert, Key string
}

// File is one rendered unit file.
type File struct {
	// Name is the unit name, the file's base name (hello.socket).
	Name string
	// Data is the file's content.
	Data []byte
}

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.tmpl"))

// Files renders the socket and service unit files, socket first. It checks
// the name, directory and port first and names what is wrong.
func (in Init) Files() ([]File, error) {
	if err := CheckName(in.Name); err != nil {
		return nil, err
	}
	if in.Berth == "" {
		in.Berth = DefaultBerth
	}
	if err := checkPath("app directory", in.AppDir); err != nil {
		return nil, err
	}
	if err := checkPath("berth binary", in.Berth); err != nil {
		return nil, err
	}
	for _, a := range in.ServeArgs {
		if strings.ContainsFunc(a, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("units: berth serve argument %q contains a control character", a)
		}
	}
	var creds []string
	for i, p := range in.TLS {
		if err := checkPath("TLS certificate", p.Cert); err != nil {
			return nil, err
		}
		if err := checkPath("TLS key", p.Key); err != nil {
			return nil, err
		}
		creds = append(creds,
			fmt.Sprintf("tls-%d.crt:%s", i, escapeSpecifiers(p.Cert)),
			fmt.Sprintf("tls-%d.key:%s", i, escapeSpecifiers(p.Key)))
	}
	var listen []string
	for _, a := range in.Listen {
		v, err := ListenStream(a)
		if err != nil {
			return nil, err
		}
		listen = append(listen, v)
	}
	if len(listen) == 0 {
		if in.Port < 1 || in.Port > 65535 {
			return nil, fmt.Errorf("units: port %d out of range 1-65535", in.Port)
		}
		listen = []string{strconv.Itoa(in.Port)}
	}
	data := map[string]any{
		"Name":      in.Name,
		"Socket":    Socket(in.Name),
		"Service":   Service(in.Name),
		"Slice":     Slice(in.Name),
		"Worker1":   WorkerService(in.Name, "w1"),
		"Listen":    listen,
		"Desc":      escapeSpecifiers(in.Name + " (" + in.AppDir + ")"),
		"ExecStart": execLine(in.execStart()...),
		// A rolling restart that `systemctl reload` waits for, and that
		// fails it when a new worker fails to start (the old ones keep
		// serving), as `berth restart` does.
		"ExecReload":  execLine(in.Berth, "restart", in.Name),
		"AppDirPath":  quoteWord("-" + escapeSpecifiers(in.AppDir)), // "-": a missing directory is berth's error to report
		"ProtectHome": protectHome(in.AppDir),
		"Credentials": creds,
	}
	prefix := "system."
	if in.UserManager {
		prefix = "user."
	}
	var files []File
	for _, kind := range []string{"socket", "service"} {
		var b bytes.Buffer
		if err := templates.ExecuteTemplate(&b, prefix+kind+".tmpl", data); err != nil {
			return nil, fmt.Errorf("units: render %s.%s: %w", in.Name, kind, err)
		}
		files = append(files, File{Name: in.Name + "." + kind, Data: b.Bytes()})
	}
	return files, nil
}

// execStart is berth's command line. Under a user manager berth forks its
// workers itself (--spawner exec): the system manager runs no units for an
// unprivileged caller. ServeArgs come last, so they can say otherwise.
func (in Init) execStart() []string {
	argv := []string{in.Berth, "serve", in.AppDir, "--name", in.Name}
	if in.UserManager {
		argv = append(argv, "--spawner", "exec")
	}
	for i := range in.TLS {
		argv = append(argv, "--tls-cert", fmt.Sprintf("tls-%d.crt", i), "--tls-key", fmt.Sprintf("tls-%d.key", i))
	}
	return append(argv, in.ServeArgs...)
}

// ListenStream returns the ListenStream= value for addr, a berth listen
// address: "host:port" (an IP address or a name, port 1-65535), a port
// number (all addresses), or a Unix socket path, absolute, as "/path" or
// "unix:/path".
func ListenStream(addr string) (string, error) {
	if strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("units: listen address %q contains a space or a control character", addr)
	}
	if p, ok := strings.CutPrefix(addr, "unix:"); ok || strings.HasPrefix(addr, "/") {
		if !ok {
			p = addr
		}
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("units: listen address %q: a Unix socket needs an absolute path", addr)
		}
		return escapeSpecifiers(p), nil
	}
	port := addr
	if host, p, err := net.SplitHostPort(addr); err == nil {
		if host == "" {
			return "", fmt.Errorf("units: listen address %q: name a host (127.0.0.1:PORT, [::]:PORT), or give the port alone for all addresses", addr)
		}
		port = p
	} else if strings.Contains(addr, ":") {
		return "", fmt.Errorf("units: listen address %q: want host:port ([::1]:8080 for IPv6), a port, or unix:/path", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("units: listen address %q: port %q out of range 1-65535", addr, port)
	}
	return escapeSpecifiers(addr), nil
}

// checkPath reports whether p can be written into a unit file as an
// absolute path.
func checkPath(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("units: %s %q is not an absolute path", what, p)
	}
	for _, r := range p {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("units: %s %q contains a control character", what, p)
		}
	}
	return nil
}

// homeDirs are where ProtectHome= applies.
var homeDirs = []string{"/home", "/root", "/run/user"}

// underHome reports whether dir is inside a directory that ProtectHome=
// hides.
func underHome(dir string) bool {
	dir = filepath.Clean(dir)
	for _, h := range homeDirs {
		if dir == h || strings.HasPrefix(dir, h+"/") {
			return true
		}
	}
	return false
}

// protectHome is the ProtectHome= value for a service that must read dir:
// "yes" (home directories hidden) unless dir lives in one, then
// "read-only".
func protectHome(dir string) string {
	if underHome(dir) {
		return "read-only"
	}
	return "yes"
}

// escapeSpecifiers doubles '%' so that systemd does not read a specifier.
func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// execLine renders a command line for ExecStart=: specifiers and '$'
// escaped, words with spaces or quotes double-quoted.
func execLine(argv ...string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		a = strings.ReplaceAll(escapeSpecifiers(a), "$", "$$")
		words[i] = quoteWord(a)
	}
	return strings.Join(words, " ")
}

// quoteWord double-quotes w, C-style, if a unit file would otherwise split
// or unescape it.
func quoteWord(w string) string {
	if w != "" && w != ";" && !strings.ContainsAny(w, " \t\"'\\") {
		return w
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(w) + `"`
}

// tmpDirs are the directories PrivateTmp=yes replaces with empty private
// ones.
var tmpDirs = []string{"/tmp", "/var/tmp"}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	p = filepath.Clean(p)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// Warnings lists, one sentence each, what the service's sandbox hides
// from berth: the app directory or the berth binary in /tmp or /var/tmp
// (PrivateTmp=yes gives the service empty ones of its own), or the binary
// in /home, /root or /run/user when ProtectHome=yes hides them. The units
// are still valid; the service would fail at its start. A user manager's
// units have no such sandbox, so there are none.
func (in Init) Warnings() []string {
	if in.UserManager {
		return nil
	}
	berth := in.Berth
	if berth == "" {
		berth = DefaultBerth
	}
	var ws []string
	for _, p := range []struct{ what, path string }{{"the app directory", in.AppDir}, {"the berth binary", berth}} {
		for _, t := range tmpDirs {
			if under(p.path, t) {
				ws = append(ws, fmt.Sprintf("%s %s is in %s, which the service cannot see (PrivateTmp=yes gives it an empty %s of its own): move it elsewhere, e.g. under /srv or /usr/local", p.what, p.path, t, t))
			}
		}
	}
	if protectHome(in.AppDir) == "yes" && underHome(berth) {
		ws = append(ws, fmt.Sprintf("the berth binary %s is in a home directory, which the service cannot see (ProtectHome=yes): install it elsewhere (make install puts it in /usr/local/bin) or name another with --berth", berth))
	}
	return ws
}
