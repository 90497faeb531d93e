// Command floor measures the system-call floor of a front end on this
// machine: the CPU per request of one thread that answers every request
// with the same hit-sized response, built two ways over the same
// connection code, and driven by wrk (2 threads, 64 connections):
//
//   - epoll: edge-triggered epoll_wait, then read and write per request,
//     as nginx and berth's loop engine do;
//   - uring: io_uring, each turn submitting every connection's recv and
//     send and reaping their completions in one io_uring_enter.
//
// It prints, per round and mode, the server's CPU per request (from
// /proc), the whole machine's busy time per request (/proc/stat: wrk and
// the kernel included) and the requests per second. DESIGN.md ("The
// system-call floor, and io_uring") records what it found and why it
// matters. It is an experiment run by hand, not berth code:
//
//	go run ./bench/floor [-rounds 2] [-duration 8s]
//
// No Go io_uring module is served to the development machines, so the
// ring is driven here through x/sys/unix directly (io_uring(7), and
// liburing's and giouring's sources for the memory ordering).
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	serve := flag.String("serve", "", "internal: serve in this mode (epoll or uring) on the listening socket passed as fd 3")
	rounds := flag.Int("rounds", 2, "interleaved rounds of both modes")
	duration := flag.Duration("duration", 8*time.Second, "each measured wrk run (after a 2 s warm-up)")
	flag.Parse()
	if *serve != "" {
		if err := serveMode(*serve, os.NewFile(3, "listener")); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measure(ctx, *rounds, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// measure runs both modes in turn, rounds times, and prints a line each.
func measure(ctx context.Context, rounds int, d time.Duration) error {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return fmt.Errorf("wrk not found: install it (apt-get install wrk): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Println("| round | mode | server µs/req | machine busy µs/req | req/s |")
	fmt.Println("|---:|---|---:|---:|---:|")
	for r := 1; r <= rounds; r++ {
		for _, mode := range []string{"epoll", "uring"} {
			line, err := runOnce(ctx, self, wrk, mode, d)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, mode, err)
			}
			fmt.Printf("| %d | %s | %s |\n", r, mode, line)
		}
	}
	return nil
}

// runOnce starts a server in mode, warms it up, and measures one wrk run.
func runOnce(ctx context.Context, self, wrk, mode string, d time.Duration) (string, error) {
	l, err := listenLoopback()
	if err != nil {
		return "", err
	}
	defer l.Close()
	cmd := exec.CommandContext(ctx, self, "-serve", mode)
	cmd.ExtraFiles = []*os.File{l}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sa, err := unix.Getsockname(int(l.Fd()))
	if err != nil {
		return "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", sa.(*unix.SockaddrInet4).Port)
	if out, err := exec.CommandContext(ctx, wrk, "-t2", "-c64", "-d2s", url).CombinedOutput(); err != nil {
		return "", fmt.Errorf("warm-up: %w: %s", err, out)
	}
	cpu0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return "", err
	}
	busy0, err := machineBusy()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, wrk, "-t2", "-c64", "-d"+strconv.Itoa(int(d.Seconds()))+"s", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("wrk: %w: %s", err, out)
	}
	cpu1, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return "", err
	}
	busy1, _ := machineBusy()
	n, rps, err := parseWrk(string(out))
	if err != nil {
		return "", err
	}
	tick := float64(time.Second/time.Microsecond) / 100 // µs per clock tick (USER_HZ 100)
	return fmt.Sprintf("%.2f | %.2f | %.0f", float64(cpu1-cpu0)*tick/n, float64(busy1-busy0)*tick/n, rps), nil
}

func listenLoopback() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		f.Close()
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 1024); err != nil {
		f.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	return f, nil
}

// procCPU is utime+stime of every thread of pid, in clock ticks.
func procCPU(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ut + st, nil
}

// machineBusy is the machine's non-idle time (user, nice, system, irq,
// softirq) in clock ticks.
func machineBusy() (uint64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan()
	v := strings.Fields(s.Text())
	var sum uint64
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, _ := strconv.ParseUint(v[i], 10, 64)
		sum += n
	}
	return sum, nil
}

// parseWrk reads the requests and requests per second of wrk's summary.
func parseWrk(out string) (n, rps float64, err error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			n, _ = strconv.ParseFloat(f[0], 64)
		case len(f) == 2 && f[0] == "Requests/sec:":
			rps, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	if n == 0 || rps == 0 {
		return 0, 0, fmt.Errorf("no summary in wrk's output: %s", out)
	}
	return n, rps, nil
}
