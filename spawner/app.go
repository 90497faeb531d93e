package spawner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// App types.
const (
	AppNode    = "node"
	AppGeneric = "generic"
)

// App says how to run an application's workers.
type App struct {
	// Type is AppNode (the default when empty) or AppGeneric.
	Type string
	// Dir is the application root.
	Dir string
	// StartupFile is the Node entry point, relative to Dir. If empty,
	// Resolve finds it as Node users expect: package.json "main", then
	// app.js, index.js, server.js.
	StartupFile string
	// Node is the Node.js binary. If empty, "node" on PATH.
	Node string
	// NodeArgs are passed to node before the startup file, e.g.
	// --env-file=.env or --max-old-space-size=512.
	NodeArgs []string
	// Command is a generic app's command line (Type AppGeneric).
	Command []string
}

// Resolve fills the defaults and checks that the app can be started: the
// startup file exists, or a generic app has a command.
func (a App) Resolve() (App, error) {
	if a.Type == "" {
		a.Type = AppNode
	}
	abs, err := filepath.Abs(a.Dir)
	if err != nil {
		return a, fmt.Errorf("app directory %s: %w", a.Dir, err)
	}
	a.Dir = abs
	if fi, err := os.Stat(a.Dir); err != nil {
		return a, fmt.Errorf("app directory: %w", err)
	} else if !fi.IsDir() {
		return a, fmt.Errorf("app directory %s is not a directory", a.Dir)
	}
	switch a.Type {
	case AppGeneric:
		if len(a.Command) == 0 {
			return a, errors.New("a generic app needs a command (--command 'CMD ARGS…')")
		}
		return a, nil
	case AppNode:
	default:
		return a, fmt.Errorf("unknown app type %q (want %q or %q)", a.Type, AppNode, AppGeneric)
	}
	if a.Node == "" {
		a.Node = "node"
	}
	if a.StartupFile != "" {
		if _, err := os.Stat(filepath.Join(a.Dir, a.StartupFile)); err != nil {
			return a, fmt.Errorf("startup file: %w", err)
		}
		return a, nil
	}
	f, err := findStartupFile(a.Dir)
	if err != nil {
		return a, err
	}
	a.StartupFile = f
	return a, nil
}

// findStartupFile picks the entry point the way `node .` and npm users
// expect: package.json "main", then app.js, index.js, server.js.
func findStartupFile(dir string) (string, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil {
		var pkg struct {
			Main string `json:"main"`
		}
		if err := json.Unmarshal(b, &pkg); err != nil {
			return "", fmt.Errorf("%s: %w", filepath.Join(dir, "package.json"), err)
		}
		if pkg.Main != "" {
			for _, cand := range []string{pkg.Main, pkg.Main + ".js", pkg.Main + ".mjs", pkg.Main + ".cjs", filepath.Join(pkg.Main, "index.js")} {
				if fi, err := os.Stat(filepath.Join(dir, cand)); err == nil && !fi.IsDir() {
					return filepath.Clean(cand), nil
				}
			}
			return "", fmt.Errorf("%s names \"main\": %q, which does not exist", filepath.Join(dir, "package.json"), pkg.Main)
		}
	}
	for _, cand := range []string{"app.js", "index.js", "server.js"} {
		if _, err := os.Stat(filepath.Join(dir, cand)); err == nil {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no startup file in %s: looked for package.json \"main\", app.js, index.js, server.js (name one with --startup-file)", dir)
}

// Argv is the worker command line. loader is the path of berth's Node
// loader (ignored for generic apps).
func (a App) Argv(loader string) []string {
	if a.Type == AppGeneric {
		return append([]string(nil), a.Command...)
	}
	argv := []string{a.Node}
	argv = append(argv, a.NodeArgs...)
	argv = append(argv, "--require", loader, filepath.Join(a.Dir, a.StartupFile))
	return argv
}

// SplitCommand splits a command line on spaces, honouring single and
// double quotes and backslash escapes, as a shell would for plain words.
func SplitCommand(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("command %q: unterminated %c quote", s, quote)
	}
	if in {
		args = append(args, cur.String())
	}
	return args, nil
}
