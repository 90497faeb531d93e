//go:build race

package sockio

import "syscall"

// The race detector cannot see goroutines synchronizing through the
// kernel (one writes to a socket, another reads what it wrote).
// syscall.Read and syscall.Write, which net.Conn uses, tell it so: an
// acquire after every read, a release before every write, on one object
// of package syscall. A raw call bypasses them, so in race builds each
// read and write of a Conn also makes an empty one through them, on
// /dev/null.
var devNull = func() int {
	fd, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		panic("sockio: open /dev/null for the race detector: " + err.Error())
	}
	return fd
}()

func raceAcquire()      { syscall.Read(devNull, nil) }
func raceReleaseMerge() { syscall.Write(devNull, nil) }
