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

	"berth/balancer/limits"
	"berth/balancer/trust"
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
	LogFile         string
	// Static files (balancer/static).
	Static       string
	StaticDir    string
	StaticMaxAge time.Duration
	// TLS on the public listeners (balancer/certs).
	TLSCert, TLSKey stringList
	HTTP2           string
	Engine          string
	// Client limits (balancer/limits, balancer.ServerConfig).
	MaxConnections      int
	MaxConnectionsPerIP int
	MaxBodySize         string
	MaxBodyBytes        int64 // MaxBodySize parsed
	MaxHeaderBytes      int
	MaxRequestLine      int
	HeaderTimeout       time.Duration
	KeepaliveTimeout    time.Duration
	ClientTimeout       time.Duration
	// Buffering (balancer/buffer).
	Buffering   string
	StreamPaths stringList
	BufferDir   string // where held bodies go; "" for bufferLink's default
	// Settings of the systemd back end's worker units.
	User, Group string
	MemoryMax   string
	CPUQuota    string
	TasksMax    uint64
	NoSandbox   bool
	// Worker health (issue 10).
	FriendlyErrorPages bool
	MaxRequests        uint64
	MemoryLimit        string
	ExitIdleTime       time.Duration
	MaxBlocked         time.Duration
	MaxRequestTime     time.Duration
	StickySessions     bool
	StickyCookie       string
	// In a fleet behind a load balancer (fleet.go).
	TrustedProxy  stringList
	ProxyProtocol bool
	StatusListen  string
	AgentListen   string
	Metrics       bool
	AccessLog     bool
	DrainDelay    time.Duration
	trusted       trust.List // TrustedProxy, parsed by validate
	// The response cache.
	Cache            string
	CacheSize        string
	CacheMaxEntry    string
	CacheVaryCookies stringList
	cacheBytes       int64 // CacheSize, parsed by validate
	cacheEntryBytes  int64 // CacheMaxEntry, parsed by validate
}

// configFile is the optional per-app settings file in the app directory.
const configFile = "berth.json"

// adminOnly are the flags berth.json may not set: the file belongs to the
// app's owner, and these decide the workers' privileges (--spawner=exec
// runs them as berth's own user, root under berth init's unit) or where
// berth, as root, writes (--log-file, --buffer-dir).
var adminOnly = map[string]bool{"spawner": true, "user": true, "group": true, "memory-max": true, "cpu-quota": true, "tasks-max": true, "no-sandbox": true, "log-file": true, "buffer-dir": true, "tls-cert": true, "tls-key": true}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
func (s *stringList) Get() any           { return []string(*s) }

const serveSynopsis = "berth serve [flags] [APP_DIR]"

const serveAbout = `Serves the app in APP_DIR (default .) on several workers behind one port,
until SIGTERM; SIGHUP restarts the workers one by one. Flags may also be set
in APP_DIR/berth.json, with _ for - ({"min_workers": 2}), except --spawner,
--user, --group, --memory-max, --cpu-quota, --tasks-max, --no-sandbox,
--log-file, --tls-cert and --tls-key; the command line wins.`

// serveCommand returns serve's flags, which fill c.
func serveCommand(c *serveConfig) *command {
	cmd := newCommand("serve", serveSynopsis, serveAbout)
	fs := cmd.FlagSet
	fs.StringVar(&c.Name, "name", "", "app name, used in logs and unit names (default: the app directory's name)")
	fs.IntVar(&c.Port, "port", 3000, "TCP port to listen on when no --listen is given and no socket is inherited")
	fs.Var(&c.Listen, "listen", "address to listen on: host:port, :port, [::]:port or unix:/path (repeatable; default :PORT)")
	fs.IntVar(&c.Workers, "workers", 0, "number of workers (sets both --min-workers and --max-workers; default: CPU count, at least 2)")
	fs.IntVar(&c.MinWorkers, "min-workers", 0, "workers kept running at all times (0 given explicitly: none while no request comes; the first request starts one)")
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
	fs.StringVar(&c.LogFile, "log-file", "", "write berth's log and the workers' output to this file instead of stderr; reopened on SIGUSR1 (logrotate)")
	fs.StringVar(&c.Static, "static", "on", "serve static files from --static-dir without asking the app: on or off")
	fs.StringVar(&c.StaticDir, "static-dir", "", "directory of static files, relative to the app dir (default public, if it exists)")
	fs.Var(&c.TLSCert, "tls-cert", "TLS certificate chain file (PEM) for the public listeners; repeatable with --tls-key, chosen by SNI (a bare name is looked up in $CREDENTIALS_DIRECTORY)")
	fs.Var(&c.TLSKey, "tls-key", "key file (PEM) of the --tls-cert given in the same position")
	fs.StringVar(&c.HTTP2, "http2", "on", "offer HTTP/2 by ALPN on TLS listeners: on or off")
	fs.StringVar(&c.Engine, "engine", "loop", "what serves plain HTTP connections: loop (an event loop per core, sends batched through io_uring) or goroutine (one per connection: its connections are served on whatever core is running, for a VM whose host takes cores away); TLS and PROXY-protocol listeners always use goroutines")
	fs.IntVar(&c.MaxConnections, "max-connections", 0, "client connections open at once; more wait in the kernel's listen backlog (0: no limit)")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", 0, "client connections open at once from one address; more are closed at once (0: no limit)")
	fs.StringVar(&c.MaxBodySize, "max-body-size", "100M", "largest request body, bytes or with K, M, G; larger ones get 413 (0: no limit)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 32<<10, "largest request head in bytes; larger ones get 431")
	fs.IntVar(&c.MaxRequestLine, "max-request-line", 8<<10, "longest request line in bytes; longer ones get 414")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", 15*time.Second, "how long a client may take to send a request head (slow ones get 408)")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", 75*time.Second, "how long an idle client connection is kept open for its next request")
	fs.DurationVar(&c.ClientTimeout, "client-timeout", 60*time.Second, "how long a read of a request body or a write of a response may wait for the client")
	fs.StringVar(&c.Buffering, "buffering", "on", "read request bodies whole before a worker is picked, and hold large responses while slow clients read them: on or off")
	fs.Var(&c.StreamPaths, "stream-path", "path prefix whose requests and responses pass through unbuffered, e.g. /upload/live (repeatable)")
	fs.StringVar(&c.BufferDir, "buffer-dir", "", "directory for bodies held past their memory share, on a disk with room for them (default $TMPDIR, else /var/tmp; private to the service under berth init's unit)")
	fs.DurationVar(&c.StaticMaxAge, "static-max-age", 0, "Cache-Control max-age for static files whose names carry a content hash (app-3f9a1c2b.js), e.g. 8760h; 0 sends none")
	fs.StringVar(&c.User, "user", "", "systemd back end: user the workers run as (default: the owner of the app directory; root only if named)")
	fs.StringVar(&c.Group, "group", "", "systemd back end: group the workers run as (default: the user's primary group)")
	fs.StringVar(&c.MemoryMax, "memory-max", "", "systemd back end: memory cap per worker, bytes or with K, M, G suffix (MemoryMax=)")
	fs.StringVar(&c.CPUQuota, "cpu-quota", "", "systemd back end: CPU cap per worker as a percentage of one CPU, e.g. 50% or 200% (CPUQuota=)")
	fs.Uint64Var(&c.TasksMax, "tasks-max", 0, "systemd back end: most processes and threads per worker (TasksMax=; default systemd's)")
	fs.BoolVar(&c.NoSandbox, "no-sandbox", false, "systemd back end: run workers without systemd sandboxing (ProtectSystem=, PrivateTmp=, …)")
	fs.BoolVar(&c.FriendlyErrorPages, "friendly-error-pages", false, "show visitors why the app is unavailable, with its output (start errors, stack traces); for development only")
	fs.Uint64Var(&c.MaxRequests, "max-requests", 0, "replace a worker after about this many requests (each worker's limit is up to a tenth lower, so they do not recycle together; 0: never)")
	fs.StringVar(&c.MemoryLimit, "memory-limit", "", "replace a worker using more memory than this, bytes or with K, M, G suffix (a new worker is ready first)")
	fs.DurationVar(&c.MaxBlocked, "max-blocked", 5*time.Second, "a worker whose event loop sent no heartbeat for this long gets no new request until it does (Node workers; 0: never held)")
	fs.DurationVar(&c.MaxRequestTime, "max-request-time", 0, "a request whose worker has not begun to answer after this long gets 504, and the worker, if its event loop is blocked, is replaced (0: no limit)")
	fs.BoolVar(&c.StickySessions, "sticky-sessions", false, "send a client back to the worker that answered it before (a cookie names the worker), e.g. for socket.io's polling transport")
	fs.StringVar(&c.StickyCookie, "sticky-sessions-cookie-name", "berth_route", "the cookie --sticky-sessions sets")
	fs.DurationVar(&c.ExitIdleTime, "exit-idle-time", 0, "under socket activation, exit after this long without a request (systemd starts berth again on the next connection; 0: never)")
	fleetFlags(fs, c)
	fs.StringVar(&c.Cache, "cache", "on", "response cache: on, or off (the app opts in per response with Cache-Control max-age/s-maxage or Expires)")
	fs.StringVar(&c.CacheSize, "cache-size", "64M", "response cache: memory for stored responses, bytes or with K, M, G suffix")
	fs.StringVar(&c.CacheMaxEntry, "cache-max-entry", "1M", "response cache: largest body stored; larger responses stream through uncached")
	fs.Var(&c.CacheVaryCookies, "cache-vary-cookie", "response cache: cookie whose value is part of every cache key, so that requests with the same value share entries (repeatable)")
	return cmd
}

// parseServe reads the command line and then APP_DIR/berth.json; flags
// given on the command line win over the file. -h writes the help to
// helpOut and returns flag.ErrHelp; a bad flag gives a *usageError.
func parseServe(args []string, helpOut io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	cmd := serveCommand(c)
	pos, err := cmd.parse(args, helpOut)
	if err != nil {
		return nil, err
	}
	switch len(pos) {
	case 0:
		c.AppDir = "."
	case 1:
		c.AppDir = pos[0]
	default:
		return nil, &usageError{fmt.Sprintf("serve takes one app directory, got %q", pos)}
	}
	set := setFlags(cmd.FlagSet)
	staticDirByAdmin := set["static-dir"]
	if err := applyFile(cmd.FlagSet, filepath.Join(c.AppDir, configFile), set); err != nil {
		return nil, err
	}
	if filepath.IsAbs(c.StaticDir) && !staticDirByAdmin {
		return nil, fmt.Errorf("%s: an absolute static_dir (%s) can only be given on berth's command line: berth.json may name a directory inside the app", filepath.Join(c.AppDir, configFile), c.StaticDir)
	}
	cmd.FlagSet.Visit(func(f *flag.Flag) { set[f.Name] = true }) // and those the file set
	return c, c.validate(set)
}

// checkServeArgs parses args as `berth serve` would, without an app
// directory and without reading berth.json, and validates them: what
// `berth init` puts after `berth serve APP_DIR --name NAME` in ExecStart.
func checkServeArgs(args []string) error {
	c := &serveConfig{AppDir: "/"}
	cmd := serveCommand(c)
	pos, err := cmd.parse(args, io.Discard)
	if errors.Is(err, flag.ErrHelp) {
		return errors.New("-h is not a serve flag to run with")
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("serve arguments after -- take no app directory (berth init names it), got %q", pos)
	}
	return c.validate(setFlags(cmd.FlagSet))
}

// setFlags is the set of flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// applyFile sets the flags named in a JSON file, skipping those in set.
// A missing file is fine; an unknown key, a value of the wrong JSON type
// or a bad value is an error naming the key and the file.
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
			return fmt.Errorf("%s: unknown key %q (the keys berth.json may set: %s)", path, key, knownKeys(fs))
		}
		if adminOnly[name] {
			return fmt.Errorf("%s: key %q can only be given on berth's command line: the app's owner must not choose who its workers run as, lift their limits or where berth writes", path, key)
		}
		if set[name] {
			continue // the command line wins
		}
		vals, err := jsonValues(raw[key], key, f)
		if err != nil {
			return fmt.Errorf("%s: key %q: %w", path, key, err)
		}
		for _, v := range vals {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s: key %q: bad value %q: %w", path, key, v, err)
			}
		}
	}
	return nil
}

// jsonValues turns the JSON value of key into flag values, checking its
// JSON type against the flag's: a number for counts, a string for
// durations and names, true or false for switches, a string or a list of
// strings for a repeatable flag (and an object of strings for env).
func jsonValues(raw json.RawMessage, key string, f *flag.Flag) ([]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var kind any
	if g, ok := f.Value.(flag.Getter); ok {
		kind = g.Get()
	}
	switch kind.(type) {
	case int, uint64:
		n, ok := v.(float64)
		if !ok {
			return nil, fmt.Errorf("%s; want a number, like \"%s\": %s", describe(raw, v), key, example(v, "2"))
		}
		if n != float64(int64(n)) {
			return nil, fmt.Errorf("%s; want a whole number", describe(raw, v))
		}
		return []string{strconv.FormatInt(int64(n), 10)}, nil
	case time.Duration:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		if n, ok := v.(float64); ok {
			return nil, fmt.Errorf("%s is a number; use a string like \"%ss\" (units: ms, s, m, h)", raw, strconv.FormatFloat(n, 'f', -1, 64))
		}
		return nil, fmt.Errorf("%s; use a string like \"30s\"", describe(raw, v))
	case bool:
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, fmt.Errorf("%s; want true or false", describe(raw, v))
	case string:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		return nil, fmt.Errorf("%s; want a string, like \"%s\": %s", describe(raw, v), key, strconv.Quote(fmt.Sprint(v)))
	case []string:
		switch x := v.(type) {
		case string:
			return []string{x}, nil
		case []any:
			var out []string
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("list item %v is not a string; want a list of strings", e)
				}
				out = append(out, s)
			}
			return out, nil
		case map[string]any:
			if key != "env" {
				break
			}
			var out []string
			for k, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("%q: %v is not a string; environment values are strings, like %q: %q", k, e, k, fmt.Sprint(e))
				}
				out = append(out, k+"="+s)
			}
			sort.Strings(out)
			return out, nil
		}
		want := "a string or a list of strings"
		if key == "env" {
			want = `an object of strings, like {"NODE_ENV": "production"}`
		}
		return nil, fmt.Errorf("%s; want %s", describe(raw, v), want)
	}
	return nil, fmt.Errorf("berth cannot read key %q from a file", key)
}

// describe names the JSON type of a value: `"2" is a string`.
func describe(raw json.RawMessage, v any) string {
	var kind string
	switch v.(type) {
	case string:
		kind = "a string"
	case float64:
		kind = "a number"
	case bool:
		kind = "a boolean"
	case nil:
		kind = "null"
	case []any:
		kind = "a list"
	default:
		kind = "an object"
	}
	s := string(raw)
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s + " is " + kind
}

// example is v written as a number when it reads as one, else def.
func example(v any, def string) string {
	if s, ok := v.(string); ok {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return s
		}
	}
	return def
}

// knownKeys lists the keys berth.json may set: the serve flags with _ for
// -, without those only the command line may give.
func knownKeys(fs *flag.FlagSet) string {
	var ks []string
	fs.VisitAll(func(f *flag.Flag) {
		if !adminOnly[f.Name] {
			ks = append(ks, strings.ReplaceAll(f.Name, "-", "_"))
		}
	})
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
	// --min-workers 0 asked for: no worker while no request comes.
	idleToZero := set["min-workers"] && c.MinWorkers == 0 && c.Workers == 0
	if c.MinWorkers == 0 && c.MaxWorkers == 0 && !idleToZero {
		c.MinWorkers = max(2, runtime.NumCPU())
		c.MaxWorkers = c.MinWorkers
	}
	if c.MinWorkers == 0 && !idleToZero {
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
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max-blocked", c.MaxBlocked}, {"max-request-time", c.MaxRequestTime}, {"exit-idle-time", c.ExitIdleTime}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %s: want a duration such as 30s, or 0 for none", d.name, d.v)
		}
	}
	if _, err := parseBytes(c.MemoryLimit); err != nil {
		return fmt.Errorf("--memory-limit: %w", err)
	}
	if err := c.validateFleet(); err != nil {
		return err
	}
	switch c.Cache {
	case "on", "off":
	default:
		return fmt.Errorf("--cache %q: want on or off", c.Cache)
	}
	for _, sz := range []struct {
		name string
		v    string
		dst  *int64
	}{{"cache-size", c.CacheSize, &c.cacheBytes}, {"cache-max-entry", c.CacheMaxEntry, &c.cacheEntryBytes}} {
		n, err := parseBytes(sz.v)
		if err != nil || n == 0 || n > 1<<40 {
			return fmt.Errorf("--%s %q: want a positive size such as 64M", sz.name, sz.v)
		}
		*sz.dst = int64(n)
	}
	if c.cacheEntryBytes > c.cacheBytes {
		return fmt.Errorf("--cache-max-entry %s is more than --cache-size %s", c.CacheMaxEntry, c.CacheSize)
	}
	for _, n := range c.CacheVaryCookies {
		if n == "" || strings.ContainsAny(n, "=;, \t\"") {
			return fmt.Errorf("--cache-vary-cookie %q: want a cookie name", n)
		}
	}
	switch c.Static {
	case "on", "off":
	default:
		return fmt.Errorf("--static %q: want on or off", c.Static)
	}
	if len(c.TLSCert) != len(c.TLSKey) {
		return fmt.Errorf("--tls-cert given %d times and --tls-key %d times: give each certificate its key", len(c.TLSCert), len(c.TLSKey))
	}
	switch c.HTTP2 {
	case "on", "off":
	default:
		return fmt.Errorf("--http2 %q: want on or off", c.HTTP2)
	}
	switch c.Engine {
	case "goroutine", "loop":
	default:
		return fmt.Errorf("--engine %q: want goroutine or loop", c.Engine)
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 {
		return errors.New("--max-connections and --max-connections-per-ip cannot be negative (0 means no limit)")
	}
	n, err := limits.ParseSize(c.MaxBodySize)
	if err != nil {
		return fmt.Errorf("--max-body-size: %w", err)
	}
	c.MaxBodyBytes = n
	if c.MaxHeaderBytes < 1024 || c.MaxRequestLine < 256 || c.MaxRequestLine > c.MaxHeaderBytes {
		return fmt.Errorf("--max-header-bytes %d, --max-request-line %d: want at least 1024 and 256, the line no longer than the head", c.MaxHeaderBytes, c.MaxRequestLine)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"header-timeout", c.HeaderTimeout}, {"keepalive-timeout", c.KeepaliveTimeout}, {"client-timeout", c.ClientTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("--%s %s: want a positive duration such as 30s", d.name, d.v)
		}
	}
	switch c.Buffering {
	case "on", "off":
	default:
		return fmt.Errorf("--buffering %q: want on or off", c.Buffering)
	}
	for _, p := range c.StreamPaths {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("--stream-path %q: want a path beginning with /", p)
		}
	}
	if c.BufferDir != "" && !filepath.IsAbs(c.BufferDir) {
		return fmt.Errorf("--buffer-dir %q: want an absolute path, such as /var/tmp", c.BufferDir)
	}
	if c.StaticMaxAge < 0 {
		return fmt.Errorf("--static-max-age %s: want a duration of 0 or more", c.StaticMaxAge)
	}
	if c.PortEnv && c.AppType != "generic" {
		return errors.New("--port-env is for generic apps: add --app-type generic --command '…'")
	}
	return nil
}
