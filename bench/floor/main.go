// Command floor measures the system-call floor of a front end on this
// machine: the CPU per request of one thread that answers every request
// with the same hit-sized response, built two ways over the same
// connection code, and driven by wrk (2 threads, 64 connections):
//
//   - epoll: edge-triggered epoll_wait, then read and write per request,
//     as nginx and berth's loop engine do;
//   - hybrid: epoll's waits and reads, the writes through io_uring, all
//     those of a turn submitted in one io_uring_enter at its end;
//   - uring: io_uring, each turn submitting every connection's recv and
//     send and reaping their completions in one io_uring_enter.
//
// It prints, per round and mode, the server's CPU per request (from
// /proc), the whole machine's busy time and context switches per request
// (/proc/stat: wrk and the kernel included) and the requests per second. DESIGN.md ("The
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
	serve := flag.String("serve", "", "internal: serve in this mode (epoll, hybrid or uring), a thread per listening socket passed from fd 3 on")
	threads := flag.Int("threads", 2, "server threads, each with its own listening socket (SO_REUSEPORT) and loop, as nginx's workers")
	rounds := flag.Int("rounds", 2, "interleaved rounds of both modes")
	duration := flag.Duration("duration", 8*time.Second, "each measured wrk run (after a 2 s warm-up)")
	flag.Parse()
	if *serve != "" {
		errc := make(chan error)
		for i := range *threads {
			go func() { errc <- serveMode(*serve, os.NewFile(uintptr(3+i), "listener")) }()
		}
		fmt.Fprintln(os.Stderr, "floor:", <-errc)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *threads < 1 {
		fmt.Fprintln(os.Stderr, "floor: -threads must be at least 1")
		os.Exit(2)
	}
	if err := measure(ctx, *rounds, *threads, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// measure runs both modes in turn, rounds times, and prints a line each.
func measure(ctx context.Context, rounds, threads int, d time.Duration) error {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return fmt.Errorf("wrk not found: install it (apt-get install wrk): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("%d server threads\n\n", threads)
	fmt.Println("| round | mode | server µs/req | machine busy µs/req | switches/req | req/s |")
	fmt.Println("|---:|---|---:|---:|---:|---:|")
	for r := 1; r <= rounds; r++ {
		for _, mode := range []string{"epoll", "hybrid", "uring"} {
			line, err := runOnce(ctx, self, wrk, mode, threads, d)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, mode, err)
			}
			fmt.Printf("| %d | %s | %s |\n", r, mode, line)
		}
	}
	return nil
}

// runOnce starts a server in mode, warms it up, and measures one wrk run.
func runOnce(ctx context.Context, self, wrk, mode string, threads int, d time.Duration) (string, error) {
	ls, err := listenLoopback(threads)
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		defer l.Close()
	}
	l := ls[0]
	cmd := exec.CommandContext(ctx, self, "-serve", mode, "-threads", strconv.Itoa(threads))
	cmd.ExtraFiles = ls
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
	busy0, sw0, err := machineStat()
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
	busy1, sw1, _ := machineStat()
	n, rps, err := parseWrk(string(out))
	if err != nil {
		return "", err
	}
	if i := strings.Index(string(out), "Socket errors"); i >= 0 {
		return "", fmt.Errorf("wrk saw errors: %s", strings.SplitN(string(out[i:]), "\n", 2)[0])
	}
	if strings.Contains(string(out), "Non-2xx") {
		return "", fmt.Errorf("wrk saw answers other than 2xx/3xx: %s", out)
	}
	tick := float64(time.Second/time.Microsecond) / 100 // µs per clock tick (USER_HZ 100)
	return fmt.Sprintf("%.2f | %.2f | %.2f | %.0f", float64(cpu1-cpu0)*tick/n, float64(busy1-busy0)*tick/n, float64(sw1-sw0)/n, rps), nil
}

// listenLoopback returns n listening sockets on one port of 127.0.0.1,
// with SO_REUSEPORT: the kernel spreads connections over them.
func listenLoopback(n int) ([]*os.File, error) {
	var ls []*os.File
	port := 0
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("socket: %w", err)
		}
		f := os.NewFile(uintptr(fd), "listener")
		ls = append(ls, f)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("SO_REUSEPORT: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("bind: %w", err)
		}
		if err := unix.Listen(fd, 1024); err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("listen: %w", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			closeAll(ls)
			return nil, err
		}
		port = sa.(*unix.SockaddrInet4).Port
	}
	return ls, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
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

// machineStat is the machine's non-idle time (user, nice, system, irq,
// softirq) in clock ticks, and its context switches so far.
func machineStat() (busy, switches uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		v := strings.Fields(s.Text())
		switch {
		case len(v) > 7 && v[0] == "cpu":
			for _, i := range []int{1, 2, 3, 6, 7} {
				n, _ := strconv.ParseUint(v[i], 10, 64)
				busy += n
			}
		case len(v) == 2 && v[0] == "ctxt":
			switches, _ = strconv.ParseUint(v[1], 10, 64)
		}
	}
	return busy, switches, s.Err()
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
