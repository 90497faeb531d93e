package units

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// WorkerSocketName is the LISTEN_FDNAMES entry a worker finds for its
// socket (see the worker contract in DESIGN.md).
const WorkerSocketName = "berth"

// Worker describes one worker's transient unit pair. The zero value of
// every optional field is the safe default: sandboxed, no limits.
type Worker struct {
	// App is the app name (see CheckName).
	App string
	// Name is the worker's name within the app: "w1", "w2", … (see
	// CheckWorker).
	Name string
	// Gen is the unit pair's generation within the worker name (see
	// WorkerGenService): 0 or 1 names the pair berth-APP-WORKER.socket and
	// .service, a later one berth-APP-WORKER-gGEN.*. The worker's
	// environment says only Name (BERTH_WORKER).
	Gen int
	// Parent is berth's own unit (e.g. myapp.service). The worker's units
	// are bound to it (BindsTo=, PartOf=), so systemd stops them when berth
	// stops or dies, and ordered before it (Before=): berth, Type=notify,
	// is not ready before its first workers are, so After= would hold
	// their start jobs until berth's own timed out; and on stop, berth
	// stops first, draining its requests into workers that still run.
	// Required.
	Parent string

	// Argv is the command line; Argv[0] must be an absolute path (systemd
	// does not search PATH for a transient unit).
	Argv []string
	// Dir is the working directory, the app root: an absolute path.
	Dir string
	// Env is the worker's environment, KEY=VALUE. BERTH_APP and
	// BERTH_WORKER are added. Nothing else is inherited: systemd starts
	// the unit with its own clean environment.
	Env []string

	// User and Group run the worker's process. An empty User leaves User=
	// unset: the worker runs as the manager's user, which under the system
	// manager is root. The caller chooses (berth's default is the owner of
	// the app directory). An empty Group means the user's primary group.
	User, Group string

	// Socket is the path of the worker's Unix socket, the ListenStream= of
	// its socket unit, e.g. /run/berth/myapp/w1.sock.
	Socket string
	// SocketUser owns the socket file (SocketUser=); only it may connect
	// (mode 0600). It must be berth's own user, since berth proxies to the
	// socket; the worker gets the socket as fd 3 and needs no access to the
	// path. If empty or "root", SocketUser= is left out: root owns the
	// socket anyway, and naming an owner makes systemd fork a helper to
	// chown it, one more process that can fail.
	SocketUser string

	// MemoryMax caps the worker's memory in bytes (MemoryMax=). If zero,
	// no cap.
	MemoryMax uint64
	// MemoryHigh throttles the worker and makes the kernel reclaim its
	// memory above this many bytes (MemoryHigh=): set a little above
	// berth's --memory-limit, so that a leaking worker slows down rather
	// than grows while its replacement starts. If zero, none.
	MemoryHigh uint64
	// CPUQuota caps the worker's CPU time as a percentage of one CPU
	// (CPUQuota=; 200 is two CPUs). If zero, no cap.
	CPUQuota int
	// TasksMax caps the worker's processes and threads (TasksMax=). If
	// zero, systemd's default applies.
	TasksMax uint64
	// StopTimeout is how long the worker has between SIGTERM and SIGKILL
	// (TimeoutStopSec=). If zero, systemd's default (90 s) applies.
	StopTimeout time.Duration

	// NoSandbox turns off the sandboxing that Sandbox lists, for an app
	// that needs to write outside its directory, use devices or create
	// namespaces (a headless browser, say).
	NoSandbox bool
}

// Transient is a worker's unit pair, ready for StartTransientUnit: start
// Socket with Service as its auxiliary unit (as `systemd-run
// --socket-property=…` does), so that the socket exists before the service
// and outlives a restart of it.
type Transient struct {
	Socket  Unit
	Service Unit
}

// Unit is one transient unit: its name and properties.
type Unit struct {
	Name       string
	Properties []sd.Property
}

// Aux returns u as the auxiliary-unit argument of StartTransientUnit
// (type a(sa(sv))).
func (u Unit) Aux() sd.PropertyCollection {
	return sd.PropertyCollection{Name: u.Name, Properties: u.Properties}
}

// TransientUnits returns the worker's unit pair. It checks w and names
// what is missing or wrong; it does not talk to systemd.
func TransientUnits(w Worker) (Transient, error) {
	if err := w.check(); err != nil {
		return Transient{}, err
	}
	service := WorkerGenService(w.App, w.Name, w.Gen)
	socket := WorkerGenSocket(w.App, w.Name, w.Gen)
	gen := ""
	if w.Gen > 1 {
		gen = fmt.Sprintf(" (generation %d)", w.Gen)
	}
	binding := []sd.Property{
		sd.PropBindsTo(w.Parent),
		prop("PartOf", []string{w.Parent}),
		sd.PropBefore(w.Parent),
		prop("CollectMode", "inactive-or-failed"),
	}

	sock := []sd.Property{
		sd.PropDescription(fmt.Sprintf("berth worker %s socket of %s%s", w.Name, w.App, gen)),
		prop("Listen", []listen{{"Stream", w.Socket}}),
		prop("SocketMode", uint32(0o600)),
		prop("FileDescriptorName", WorkerSocketName),
		prop("RemoveOnStop", true),
		// No Service=: systemd refuses it on a transient socket, and the
		// service of the same name is the one it activates.
	}
	if w.SocketUser != "" && w.SocketUser != "root" {
		sock = append(sock, prop("SocketUser", w.SocketUser))
	}
	sock = append(sock, binding...)

	env := append([]string{"BERTH_APP=" + w.App, "BERTH_WORKER=" + w.Name}, w.Env...)
	svc := []sd.Property{
		sd.PropDescription(fmt.Sprintf("berth worker %s of %s%s", w.Name, w.App, gen)),
		sd.PropType("exec"),
		sd.PropExecStart(w.Argv, false),
		prop("WorkingDirectory", w.Dir),
		prop("Environment", env),
		sd.PropSlice(Slice(w.App)),
		prop("SyslogIdentifier", w.App),
	}
	svc = append(svc, binding...)
	if w.User != "" {
		svc = append(svc, prop("User", w.User))
	}
	if w.Group != "" {
		svc = append(svc, prop("Group", w.Group))
	}
	if w.MemoryMax > 0 {
		svc = append(svc, prop("MemoryMax", w.MemoryMax))
	}
	if w.MemoryHigh > 0 {
		svc = append(svc, prop("MemoryHigh", w.MemoryHigh))
	}
	if w.CPUQuota > 0 {
		// CPUQuota=P% is P/100 s of CPU time per second.
		svc = append(svc, prop("CPUQuotaPerSecUSec", uint64(w.CPUQuota)*10000))
	}
	if w.TasksMax > 0 {
		svc = append(svc, prop("TasksMax", w.TasksMax))
	}
	if w.StopTimeout > 0 {
		svc = append(svc, prop("TimeoutStopUSec", uint64(w.StopTimeout/time.Microsecond)))
	}
	if !w.NoSandbox {
		svc = append(svc, Sandbox(w.Dir, w.User == "" || w.User == "root")...)
	}
	return Transient{
		Socket:  Unit{Name: socket, Properties: sock},
		Service: Unit{Name: service, Properties: svc},
	}, nil
}

func (w Worker) check() error {
	if err := CheckName(w.App); err != nil {
		return err
	}
	if err := CheckWorker(w.Name); err != nil {
		return err
	}
	what := "worker " + w.Name + " of " + w.App
	switch {
	case w.Parent == "":
		return fmt.Errorf("units: %s: no parent unit to bind to", what)
	case len(w.Argv) == 0:
		return fmt.Errorf("units: %s: empty command", what)
	case !filepath.IsAbs(w.Argv[0]):
		return fmt.Errorf("units: %s: command %q is not an absolute path", what, w.Argv[0])
	case !filepath.IsAbs(w.Dir):
		return fmt.Errorf("units: %s: working directory %q is not an absolute path", what, w.Dir)
	case !filepath.IsAbs(w.Socket):
		return fmt.Errorf("units: %s: socket %q is not an absolute path", what, w.Socket)
	case w.Gen < 0:
		return fmt.Errorf("units: %s: negative generation %d", what, w.Gen)
	case w.CPUQuota < 0:
		return fmt.Errorf("units: %s: negative CPU quota %d%%", what, w.CPUQuota)
	}
	for _, kv := range w.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("units: %s: environment entry %q is not KEY=VALUE", what, kv)
		}
	}
	return nil
}

// Sandbox returns the sandboxing properties a worker gets unless it opts
// out: no new privileges, a private /tmp and /dev, a read-only /usr, /boot
// and /etc, home directories hidden (read-only when dir is in one, with dir
// itself writable), kernel tunables, modules, logs, clock, hostname and
// control groups protected, only Unix and IP sockets, no namespaces, no
// realtime scheduling, no set-uid files, native system calls of the
// @system-service set. Write-execute memory stays allowed (Node's JIT needs
// it). A root worker (asRoot) also keeps its capabilities; any other has
// none.
func Sandbox(dir string, asRoot bool) []sd.Property {
	p := []sd.Property{
		prop("NoNewPrivileges", true),
		prop("PrivateTmp", true),
		prop("PrivateDevices", true),
		prop("ProtectSystem", "full"),
		prop("ProtectHome", protectHome(dir)),
		prop("ProtectKernelTunables", true),
		prop("ProtectKernelModules", true),
		prop("ProtectKernelLogs", true),
		prop("ProtectControlGroups", true),
		prop("ProtectClock", true),
		prop("ProtectHostname", true),
		prop("RestrictAddressFamilies", allowList{true, []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}}),
		prop("RestrictNamespaces", uint64(0)), // no namespace type allowed
		prop("RestrictRealtime", true),
		prop("RestrictSUIDSGID", true),
		prop("LockPersonality", true),
		prop("SystemCallArchitectures", []string{"native"}),
		prop("SystemCallFilter", allowList{true, []string{"@system-service"}}),
		prop("SystemCallErrorNumber", int32(1)), // EPERM
	}
	if underHome(dir) {
		p = append(p, prop("ReadWritePaths", []string{dir}))
	}
	if !asRoot {
		p = append(p, prop("CapabilityBoundingSet", uint64(0)))
	}
	return p
}

// listen is one entry of a socket unit's Listen property, type (ss):
// ("Stream", "/run/x.sock") for ListenStream=/run/x.sock.
type listen struct {
	Type, Address string
}

// allowList is the (bas) shape of RestrictAddressFamilies= and
// SystemCallFilter=: true and the allowed names.
type allowList struct {
	Allow bool
	Names []string
}

func prop(name string, v any) sd.Property {
	return sd.Property{Name: name, Value: godbus.MakeVariant(v)}
}
