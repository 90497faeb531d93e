package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// serveConfig is everything `berth serve` is told, from flags and from the
// app's berth.json. Each field's flag states its default.
type serveConfig struct {
	AppDir          string
	Name            string
	Port            int
	Listen          stringList
	Workers         int
	MinWorkers      int
	MaxWorkers      int
	StartupFile     string
	SpawnTimeout    time.Duration
	ShutdownTimeout time.Duration
	StopTimeout     time.Duration
	QueueTimeout    time.Duration
	IdleTimeout     time.Duration
	MaxQueue        int
	AppType         string
	Command         string
	PortEnv         bool
	Node            string
	NodeArgs        stringList
	Env             stringList
	Spawner         string
	LogLevel        string
	// Settings of the systemd back end's worker units.
	User, Group string
	MemoryMax   string
	CPUQuota    string
	TasksMax    uint64
	NoSandbox   bool
}

// configFile is the optional per-app settings file in the app directory.
const configFile = "berth.json"

// adminOnly are the flags berth.json may not set: the file belongs to the
// app's owner, and these decide the workers' privileges (--spawner=exec
// runs them as berth's own user, root under berth init's unit).
var adminOnly = map[string]bool{"spawner": true, "user": true, "group": true, "memory-max": true, "cpu-quota": true, "tasks-max": true, "no-sandbox": true}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func serveFlags(c *serveConfig, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("berth serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Name, "name", "", "app name, used in logs and unit names (default: the app directory's name)")
	fs.IntVar(&c.Port, "port", 3000, "TCP port to listen on when no --listen is given and no socket is inherited")
	fs.Var(&c.Listen, "listen", "address to listen on: host:port, :port, [::]:port or unix:/path (repeatable; default :PORT)")
	fs.IntVar(&c.Workers, "workers", 0, "number of workers (sets both --min-workers and --max-workers; default: CPU count, at least 2)")
	fs.IntVar(&c.MinWorkers, "min-workers", 0, "workers kept running at all times")
	fs.IntVar(&c.MaxWorkers, "max-workers", 0, "most workers run under load")
	fs.StringVar(&c.StartupFile, "startup-file", "", "Node entry point relative to the app dir (default: package.json main, app.js, index.js, server.js)")
	fs.DurationVar(&c.SpawnTimeout, "spawn-timeout", 60*time.Second, "how long a worker may take to listen")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take to finish on shutdown")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", 10*time.Second, "how long a worker may take to exit after SIGTERM before it is killed")
	fs.DurationVar(&c.QueueTimeout, "queue-timeout", 10*time.Second, "how long a request waits when no worker is ready")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 5*time.Minute, "a worker above --min-workers that has been spare this long is stopped")
	fs.IntVar(&c.MaxQueue, "max-queue", 100, "requests that may wait for a worker at once")
	fs.StringVar(&c.AppType, "app-type", "node", "node, or generic for an app in any language (with --command)")
	fs.StringVar(&c.Command, "command", "", "generic app: the command that runs one worker (it gets its socket as fd 3 by LISTEN_FDS)")
	fs.BoolVar(&c.PortEnv, "port-env", false, "generic app: pass a free loopback port in $PORT instead of a socket")
	fs.StringVar(&c.Node, "node", "node", "Node.js binary")
	fs.Var(&c.NodeArgs, "node-arg", "extra argument for node, e.g. --env-file=.env (repeatable)")
	fs.Var(&c.Env, "env", "KEY=VALUE set for the workers (repeatable)")
	fs.StringVar(&c.Spawner, "spawner", "auto", "worker back end: exec, systemd, or auto (systemd when berth runs under it)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.User, "user", "", "systemd back end: user the workers run as (default: the owner of the app directory; root only if named)")
	fs.StringVar(&c.Group, "group", "", "systemd back end: group the workers run as (default: the user's primary group)")
	fs.StringVar(&c.MemoryMax, "memory-max", "", "systemd back end: memory cap per worker, bytes or with K, M, G suffix (MemoryMax=)")
	fs.StringVar(&c.CPUQuota, "cpu-quota", "", "systemd back end: CPU cap per worker as a percentage of one CPU, e.g. 50% or 200% (CPUQuota=)")
	fs.Uint64Var(&c.TasksMax, "tasks-max", 0, "systemd back end: most processes and threads per worker (TasksMax=; default systemd's)")
	fs.BoolVar(&c.NoSandbox, "no-sandbox", false, "systemd back end: run workers without systemd sandboxing (ProtectSystem=, PrivateTmp=, …)")
	return fs
}

// parseServe reads the command line and then APP_DIR/berth.json; flags
// given on the command line win over the file.
func parseServe(args []string, stderr io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	fs := serveFlags(c, stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: berth serve [flags] [APP_DIR]\n\nServes the app in APP_DIR (default .) on several workers behind one port.\nFlags (also settable in APP_DIR/berth.json, as \"min_workers\": 2 …):")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	switch len(pos) {
	case 0:
		c.AppDir = "."
	case 1:
		c.AppDir = pos[0]
	default:
		return nil, fmt.Errorf("serve takes one app directory, got %q", pos)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyFile(fs, filepath.Join(c.AppDir, configFile), set); err != nil {
		return nil, err
	}
	return c, c.validate(set)
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`berth serve app --port 80`), which the flag
// package alone stops at. A "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// applyFile sets the flags named in a JSON file, skipping those in set.
// A missing file is fine; an unknown key or a bad value is an error naming
// the key and the file.
func applyFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name := strings.ReplaceAll(key, "_", "-")
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("%s: unknown key %q (known keys are the serve flags with _ for -: %s)", path, key, knownKeys(fs))
		}
		if set[name] {
			continue // the command line wins
		}
		if adminOnly[name] {
			return fmt.Errorf("%s: key %q can only be given on berth's command line: the app's owner must not choose who its workers run as or lift their limits", path, key)
		}
		vals, err := jsonValues(raw[key], name == "env")
		if err != nil {
			return fmt.Errorf("%s: key %q: %w", path, key, err)
		}
		for _, v := range vals {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("%s: key %q: bad value %q: %w", path, key, v, err)
			}
		}
	}
	return nil
}

// jsonValues turns a JSON scalar, array of scalars, or (for env) an object
// of strings into flag values.
func jsonValues(raw json.RawMessage, object bool) ([]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case []any:
		var out []string
		for _, e := range x {
			s, err := scalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case map[string]any:
		if !object {
			return nil, errors.New("want a value or a list, not an object")
		}
		var out []string
		for k, e := range x {
			s, err := scalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, k+"="+s)
		}
		sort.Strings(out)
		return out, nil
	default:
		s, err := scalar(x)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	default:
		return "", fmt.Errorf("want a string, number or boolean, not %v", v)
	}
}

func knownKeys(fs *flag.FlagSet) string {
	var ks []string
	fs.VisitAll(func(f *flag.Flag) { ks = append(ks, strings.ReplaceAll(f.Name, "-", "_")) })
	return strings.Join(ks, ", ")
}

// validate fills derived defaults and rejects impossible settings.
func (c *serveConfig) validate(set map[string]bool) error {
	if c.Name == "" {
		abs, err := filepath.Abs(c.AppDir)
		if err != nil {
			return fmt.Errorf("app directory %s: %w", c.AppDir, err)
		}
		c.Name = filepath.Base(abs)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("--port %d: want 1-65535", c.Port)
	}
	if c.Workers < 0 || c.MinWorkers < 0 || c.MaxWorkers < 0 {
		return errors.New("worker counts cannot be negative")
	}
	if c.Workers > 0 {
		if c.MinWorkers == 0 {
			c.MinWorkers = c.Workers
		}
		if c.MaxWorkers == 0 {
			c.MaxWorkers = c.Workers
		}
	}
	if c.MinWorkers == 0 && c.MaxWorkers == 0 {
		c.MinWorkers = max(2, runtime.NumCPU())
		c.MaxWorkers = c.MinWorkers
	}
	if c.MinWorkers == 0 {
		c.MinWorkers = 1
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = max(c.MinWorkers, runtime.NumCPU())
	}
	if c.MinWorkers > c.MaxWorkers {
		return fmt.Errorf("--min-workers %d is more than --max-workers %d", c.MinWorkers, c.MaxWorkers)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"spawn-timeout", c.SpawnTimeout}, {"shutdown-timeout", c.ShutdownTimeout}, {"stop-timeout", c.StopTimeout}, {"queue-timeout", c.QueueTimeout}, {"idle-timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("--%s %s: want a positive duration such as 30s", d.name, d.v)
		}
	}
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(c.LogLevel))); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Spawner {
	case "auto", "exec", "systemd":
	default:
		return fmt.Errorf("--spawner %q: want exec, systemd or auto", c.Spawner)
	}
	if c.PortEnv && c.AppType != "generic" {
		return errors.New("--port-env is for generic apps: add --app-type generic --command '…'")
	}
	return nil
}
