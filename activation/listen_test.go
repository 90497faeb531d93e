package activation

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain doubles as the child process for the inheritance test: run with
// BERTH_ACTIVATION_CHILD=1 it calls Listen on the sockets the parent passed
// and reports what it got, the way berth would.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_ACTIVATION_CHILD") == "1" {
		child()
		return
	}
	os.Exit(m.Run())
}

func child() {
	os.Setenv("LISTEN_PID", fmt.Sprint(os.Getpid())) // as a trampoline would
	ls, err := Listen(Config{Fallback: []string{"127.0.0.1:1"}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for _, l := range ls {
		fmt.Printf("%s %s %v\n", l.Name, l.Addr().Network(), l.Inherited)
	}
	fmt.Printf("env LISTEN_FDS=%q\n", os.Getenv("LISTEN_FDS"))
	// Answer one connection on each, to prove they listen.
	for _, l := range ls {
		c, err := l.Accept()
		if err != nil {
			fmt.Println("accept:", err)
			os.Exit(1)
		}
		c.Write([]byte("hi from " + l.Name + "\n"))
		c.Close()
	}
}

func TestListenInherited(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixPath := t.TempDir() + "/s.sock"
	unix, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	tcp6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	tf, _ := tcp.(*net.TCPListener).File()
	uf, _ := unix.(*net.UnixListener).File()
	t6f, _ := tcp6.(*net.TCPListener).File()
	cmd := exec.Command(os.Args[0])
	cmd.ExtraFiles = []*os.File{tf, uf, t6f}
	cmd.Env = append(os.Environ(), "BERTH_ACTIVATION_CHILD=1", "LISTEN_FDS=3", "LISTEN_FDNAMES=web:admin:web6")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	r := bufio.NewReader(out)
	var lines []string
	for i := 0; i < 4; i++ {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child said %q then %v", lines, err)
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	want := []string{"web tcp true", "admin unix true", "web6 tcp true", `env LISTEN_FDS=""`}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("child got %q, want %q", lines, want)
	}
	for _, dial := range [][2]string{{"tcp", tcp.Addr().String()}, {"unix", unixPath}, {"tcp6", tcp6.Addr().String()}} {
		c, err := net.Dial(dial[0], dial[1])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(b, "hi from ") {
			t.Errorf("%s: got %q", dial[0], b)
		}
	}
}

func TestListenFallbackAndForeignPid(t *testing.T) {
	env := map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "1"} // meant for pid 1, not us
	var unset []string
	ls, err := Listen(Config{
		Getenv:   func(k string) string { return env[k] },
		Unsetenv: func(k string) error { unset = append(unset, k); return nil },
		Fallback: []string{"127.0.0.1:0", "unix:" + t.TempDir() + "/f.sock"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(ls)
	if len(ls) != 2 || ls[0].Inherited || ls[1].Addr().Network() != "unix" {
		t.Fatalf("got %+v", ls)
	}
	if strings.Join(unset, ",") != "LISTEN_FDS,LISTEN_PID,LISTEN_FDNAMES" {
		t.Errorf("unset %v", unset)
	}
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		fb   []string
		want string
	}{
		{name: "bad count", env: map[string]string{"LISTEN_FDS": "x", "LISTEN_PID": fmt.Sprint(os.Getpid())}, want: `LISTEN_FDS="x"`},
		{name: "nothing", want: "no socket inherited and no address"},
		{name: "bad address", fb: []string{"localhost"}, want: "want host:port"},
		{name: "empty unix", fb: []string{"unix:"}, want: "empty socket path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Listen(Config{
				Getenv:   func(k string) string { return tc.env[k] },
				Unsetenv: func(string) error { return nil },
				Fallback: tc.fb,
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestBindReplacesStaleSocket(t *testing.T) {
	path := t.TempDir() + "/stale.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, nobody listens: stale
	l2, err := Bind("unix:" + path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l2.Close()
	if _, err := Bind("unix:" + path); err == nil {
		t.Fatal("a live socket was replaced")
	}
}
