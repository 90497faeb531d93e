// Package units knows berth's systemd units as data: their names, the unit
// files `berth init` writes, and the properties of a worker's transient
// units. It never talks to D-Bus; the systemd spawner does, with what this
// package returns.
//
// # Names
//
// An app NAME (CheckName: letters, digits, '_', '.', ':', '-') owns:
//
//	NAME.socket               the public socket (berth init)
//	NAME.service              berth itself, Type=notify (berth init)
//	berth-NAME.slice          its workers' slice, under berth.slice
//	berth-NAME-w1.socket      worker w1's socket, transient
//	berth-NAME-w1.service     worker w1, transient, activated by that socket
//	berth-NAME-w1-g2.socket   the next generation of w1's units, made beside
//	berth-NAME-w1-g2.service  the serving ones by a rolling restart
//
// In the names built from NAME a '-' is escaped as systemd-escape does
// (my-app gives berth-my\x2dapp-w1.service): systemd reads '-' in a slice name
// as hierarchy, and WorkerGlob("my") must not match the workers of an app
// called my-app.
//
// # Unit files
//
// Init.Files renders NAME.socket and NAME.service for the system manager
// (or, with UserManager, for `systemctl --user`). The system service runs
// berth as root, since it starts its workers over the system bus as the
// app's user, inside a sandbox that `systemd-analyze security` rates well
// below 4.0 (see the golden files in testdata/ and cmd/berth's container
// test). The socket unit names its socket "http" (FileDescriptorName=).
//
// # Transient units
//
// TransientUnits turns a Worker into the properties of its two units, as
// go-systemd dbus.Property values. The spawner starts the socket unit with
// the service unit as auxiliary unit (StartTransientUnit with aux, through
// godbus), as `systemd-run --socket-property=…` does:
//
//	u, err := units.TransientUnits(units.Worker{
//		App: "myapp", Name: "w1", Parent: "myapp.service",
//		Argv: []string{"/usr/bin/node", "--require", loader, "/srv/myapp/app.js"},
//		Dir:  "/srv/myapp", User: "myapp",
//		Socket: "/run/berth/myapp/w1.sock",
//	})
//	// conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").CallWithContext(ctx,
//	//	"org.freedesktop.systemd1.Manager.StartTransientUnit", 0,
//	//	u.Socket.Name, "fail", u.Socket.Properties,
//	//	[]dbus.PropertyCollection{u.Service.Aux()})
//
// The worker is bound to Parent (BindsTo, PartOf), ordered before it
// (Before: see Worker.Parent) and collected when it ends
// (CollectMode=inactive-or-failed). Its service runs in the app's
// slice with SyslogIdentifier=NAME, the limits asked for, and the sandbox
// that Sandbox lists unless Worker.NoSandbox is set. Its socket is
// ListenStream=Worker.Socket, mode 0600, owned by Worker.SocketUser (root
// by default), FileDescriptorName=berth, removed when the socket unit stops.
package units
