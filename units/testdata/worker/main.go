// Command worker is the process behind a transient worker unit in units'
// container test: it accepts one connection on the inherited fd 3 and
// writes what it finds (uid, working directory, environment) as one line.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	ln, err := net.FileListener(os.NewFile(3, "listen"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	wd, _ := os.Getwd()
	fmt.Fprintf(c, "uid=%d cwd=%s app=%s worker=%s fds=%s names=%s extra=%s\n",
		os.Getuid(), wd, os.Getenv("BERTH_APP"), os.Getenv("BERTH_WORKER"),
		os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getenv("EXTRA"))
	c.Close()
	fmt.Println("worker: served one connection")
}
