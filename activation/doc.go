// Package activation turns the sockets systemd passes (LISTEN_FDS,
// LISTEN_PID, LISTEN_FDNAMES) into listeners, falls back to binding the
// addresses berth was given when it was not socket-activated, and speaks the
// sd_notify protocol (READY, STATUS, RELOADING, STOPPING, WATCHDOG).
//
// It knows nothing of HTTP or workers. A unit pair that hands berth its
// socket looks like this:
//
//	# myapp.socket
//	[Socket]
//	ListenStream=80
//	FileDescriptorName=http
//
//	# myapp.service
//	[Service]
//	Type=notify
//	ExecStart=/usr/bin/berth serve /srv/myapp --name myapp
//
// Not running under systemd is a value, not an error: Listen binds the
// fallback addresses, and the Notifier's methods return false.
package activation
