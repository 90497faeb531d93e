package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// redirectLog points berth's standard error (fd 2) at the file path,
// appending, for `berth serve --log-file PATH`: berth's log, the workers'
// output and anything the Go runtime prints (a panic) all land there. On
// SIGUSR1 the file is opened again by name, so that logrotate can move it
// away and signal (postrotate: kill -USR1). stop ends the signal watch;
// stderr stays on the file. An empty path changes nothing.
func redirectLog(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	if err := dupOnStderr(path); err != nil {
		return nil, err
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-usr1:
				if err := dupOnStderr(path); err != nil {
					// stderr is still the old file: say it there.
					fmt.Fprintf(os.Stderr, "berth: SIGUSR1: reopen the log file: %v; still writing to the old one\n", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(usr1)
		close(done)
		<-stopped
	}, nil
}

// dupOnStderr opens path for appending (creating it 0640) and makes it
// fd 2.
func dupOnStderr(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("--log-file: %w", err)
	}
	defer f.Close()
	if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
		return fmt.Errorf("--log-file %s: make it standard error: %w", path, err)
	}
	return nil
}
