package main

// install.go: finding the tools, installing missing ones with apt-get, and
// describing the machine and the versions for the report.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// lookTool finds a program on PATH or in the sbin directories (nginx lives
// in /usr/sbin, which a user's PATH may lack).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// ensureTool returns the path of name, installing the first of pkgs that
// apt-get can install when it is missing (as root, with one apt-get update
// if the first attempt fails).
func ensureTool(ctx context.Context, name string, pkgs ...string) (string, error) {
	if p, err := lookTool(name); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s not found and not root: install the Debian package %s", name, pkgs[0])
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%s not found and no apt-get to install %s", name, pkgs[0])
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt == 1 {
			fmt.Fprintln(os.Stderr, "bench: apt-get update")
			if err := aptGet(ctx, "update", "-qq"); err != nil {
				lastErr = err
				break
			}
		}
		for _, pkg := range pkgs {
			fmt.Fprintf(os.Stderr, "bench: installing %s (apt-get install %s)\n", name, pkg)
			if err := aptGet(ctx, "install", "-y", "-qq", "--no-install-recommends", pkg); err != nil {
				lastErr = err
				continue
			}
			if p, err := lookTool(name); err == nil {
				return p, nil
			}
			lastErr = fmt.Errorf("apt-get install %s did not provide %s", pkg, name)
		}
	}
	return "", fmt.Errorf("%s not found, and installing it failed: %w", name, lastErr)
}

func aptGet(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		s := strings.TrimSpace(string(out))
		if len(s) > 400 {
			s = s[len(s)-400:]
		}
		return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, s)
	}
	return nil
}

// machine is the report's header: when, where, and which versions.
type machine struct {
	date, cpus, cpu, kernel, load string
	versions                      [][2]string // name, version
	commit                        string
}

func describeMachine(ctx context.Context, h *harness) machine {
	m := machine{
		date:   time.Now().UTC().Format("2006-01-02 15:04 MST"),
		cpus:   fmt.Sprint(runtime.NumCPU()),
		cpu:    cpuModel(),
		kernel: firstLine(readFile("/proc/sys/kernel/osrelease")),
		load:   firstLine(readFile("/proc/loadavg")),
	}
	if out := cmdOut(ctx, "nproc"); out != "" {
		m.cpus = out
	}
	goVer := runtime.Version() + " (harness)"
	if out := cmdOut(ctx, "go", "version", h.berth); out != "" {
		if _, v, ok := strings.Cut(out, ": "); ok {
			goVer = v + " (berth binary)"
		}
	}
	m.versions = append(m.versions,
		[2]string{"Go", goVer},
		[2]string{"node", cmdOut(ctx, h.node, "--version")},
		[2]string{"wrk", wrkVersion(cmdOut(ctx, h.tools["wrk"], "-v"))},
	)
	if p := h.tools["nginx"]; p != "" {
		m.versions = append(m.versions, [2]string{"nginx", strings.TrimPrefix(cmdOut(ctx, p, "-v"), "nginx version: nginx/")})
	}
	if p := h.tools["passenger"]; p != "" {
		m.versions = append(m.versions, [2]string{"Passenger", strings.TrimPrefix(cmdOut(ctx, p, "--version"), "Phusion Passenger(R) ")})
	}
	// The commit that last changed berth itself (anything but bench/, the
	// Makefile and documentation), and HEAD when that differs.
	code := []string{"--", ".", ":(exclude)bench", ":(exclude)Makefile", ":(exclude,glob)**/*.md"}
	m.commit = cmdOut(ctx, "git", append([]string{"log", "-1", "--format=%h"}, code...)...)
	if m.commit == "" {
		m.commit = "unknown (not a git checkout)"
	} else {
		if head := cmdOut(ctx, "git", "rev-parse", "--short", "HEAD"); head != m.commit {
			m.commit += " (HEAD " + head + ")"
		}
		if cmdOut(ctx, "git", append([]string{"status", "--porcelain", "--untracked-files=no"}, code...)...) != "" {
			m.commit += " with uncommitted changes"
		}
	}
	return m
}

// cmdOut runs a command and returns the first line of its output (stdout
// and stderr: nginx -v prints to stderr, wrk -v exits 1), or "".
func cmdOut(ctx context.Context, name string, args ...string) string {
	if name == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return firstLine(string(out))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// wrkVersion trims "wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer" to
// "4.1.0 [epoll]".
func wrkVersion(s string) string {
	s, _, _ = strings.Cut(s, " Copyright")
	return strings.TrimPrefix(strings.TrimSpace(s), "wrk ")
}
