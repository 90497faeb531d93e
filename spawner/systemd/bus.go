package systemd

import (
	"context"
	"fmt"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Manager is the part of go-systemd's *dbus.Conn the back end calls. Job
// results are not taken from its channels (always nil here) but from the
// JobRemoved signals the watcher sees, so that a job's result and the unit
// state it left arrive in order on one connection.
type Manager interface {
	StartTransientUnitAux(ctx context.Context, name, mode string, props []sd.Property, aux []sd.PropertyCollection, ch chan<- string) (int, error)
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	KillUnitWithTarget(ctx context.Context, name string, target sd.Who, signal int32) error
	ResetFailedUnitContext(ctx context.Context, name string) error
	ListUnitsByNamesContext(ctx context.Context, names []string) ([]sd.UnitStatus, error)
	ListUnitsByPatternsContext(ctx context.Context, states, patterns []string) ([]sd.UnitStatus, error)
	GetUnitNameByPID(ctx context.Context, pid uint32) (string, error)
	GetServicePropertyContext(ctx context.Context, service, propertyName string) (*sd.Property, error)
}

// Bus is the system bus as the back end uses it: systemd's methods
// (Manager), and its signals on a connection of their own, delivered in
// order (see watcher). DialSystemBus makes the real one; tests give a
// scripted fake.
type Bus interface {
	Manager
	// Signal delivers the connection's signals to ch, and closes ch when
	// the connection closes (as godbus.Conn.Signal).
	Signal(ch chan<- *godbus.Signal)
	// AddMatchSignalContext and RemoveMatchSignalContext add and remove
	// a match rule for signals (as godbus.Conn's).
	AddMatchSignalContext(ctx context.Context, options ...godbus.MatchOption) error
	RemoveMatchSignalContext(ctx context.Context, options ...godbus.MatchOption) error
	// SubscribeSignals asks systemd to send its unit and job signals
	// (Manager.Subscribe on the signal connection).
	SubscribeSignals(ctx context.Context) error
	// Close closes the connections.
	Close() error
}

// DialSystemBus connects to the system bus twice: go-systemd's connection
// for the calls, and one of the back end's own for signals, with a
// sequential signal handler so that they arrive in the order systemd sent
// them.
func DialSystemBus(ctx context.Context) (Bus, error) {
	conn, err := sd.NewSystemConnectionContext(context.Background()) // lives until Close
	if err != nil {
		return nil, err
	}
	sig, err := godbus.ConnectSystemBus(godbus.WithSignalHandler(godbus.NewSequentialSignalHandler()))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to the system bus for signals: %w", err)
	}
	return &systemBus{Conn: conn, sig: sig}, nil
}

type systemBus struct {
	*sd.Conn
	sig *godbus.Conn
}

func (b *systemBus) Signal(ch chan<- *godbus.Signal) { b.sig.Signal(ch) }

func (b *systemBus) AddMatchSignalContext(ctx context.Context, options ...godbus.MatchOption) error {
	return b.sig.AddMatchSignalContext(ctx, options...)
}

func (b *systemBus) RemoveMatchSignalContext(ctx context.Context, options ...godbus.MatchOption) error {
	return b.sig.RemoveMatchSignalContext(ctx, options...)
}

func (b *systemBus) SubscribeSignals(ctx context.Context) error {
	return b.sig.Object(busName, busPath).CallWithContext(ctx, ifaceManager+".Subscribe", 0).Err
}

func (b *systemBus) Close() error {
	b.Conn.Close()
	return b.sig.Close()
}

const (
	busName      = "org.freedesktop.systemd1"
	busPath      = godbus.ObjectPath("/org/freedesktop/systemd1")
	ifaceManager = "org.freedesktop.systemd1.Manager"
	ifaceUnit    = "org.freedesktop.systemd1.Unit"
	ifaceService = "org.freedesktop.systemd1.Service"
	ifaceProps   = "org.freedesktop.DBus.Properties"
)

// unitPath is the D-Bus object path of a unit.
func unitPath(name string) godbus.ObjectPath {
	return busPath + "/unit/" + godbus.ObjectPath(sd.PathBusEscape(name))
}
