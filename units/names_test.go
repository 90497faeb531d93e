package units

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "hello", ok: true},
		{name: "my-app", ok: true},
		{name: "api.v2_x:1", ok: true},
		{name: "9lives", ok: true},
		{name: "", ok: false},
		{name: "-app", ok: false},
		{name: ".app", ok: false},
		{name: "my app", ok: false},
		{name: "app@1", ok: false},
		{name: "a/b", ok: false},
		{name: `a\b`, ok: false},
		{name: "café", ok: false},
		{name: "a%i", ok: false},
		{name: string(make([]byte, MaxNameLen+1)), ok: false},
	}
	for _, tt := range tests {
		err := CheckName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrName) {
			t.Errorf("CheckName(%q) error %v does not wrap ErrName", tt.name, err)
		}
	}
}

func TestCheckWorker(t *testing.T) {
	for _, w := range []string{"w1", "w12", "spare3"} {
		if err := CheckWorker(w); err != nil {
			t.Errorf("CheckWorker(%q) = %v", w, err)
		}
	}
	for _, w := range []string{"", "1", "w-1", "W1x.", "w 1"} {
		if err := CheckWorker(w); err == nil {
			t.Errorf("CheckWorker(%q) = nil, want an error", w)
		}
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		app                       string
		service, socket, slice    string
		workerService, workerSock string
		glob                      string
	}{
		{
			app: "hello", service: "hello.service", socket: "hello.socket", slice: "berth-hello.slice",
			workerService: "berth-hello-w1.service", workerSock: "berth-hello-w1.socket", glob: "berth-hello-*",
		},
		{
			app: "my-app", service: "my-app.service", socket: "my-app.socket", slice: `berth-my\x2dapp.slice`,
			workerService: `berth-my\x2dapp-w1.service`, workerSock: `berth-my\x2dapp-w1.socket`, glob: `berth-my\x2dapp-*`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			check := func(what, got, want string) {
				if got != want {
					t.Errorf("%s(%q) = %q, want %q", what, tt.app, got, want)
				}
			}
			check("Service", Service(tt.app), tt.service)
			check("Socket", Socket(tt.app), tt.socket)
			check("Slice", Slice(tt.app), tt.slice)
			check("WorkerService", WorkerService(tt.app, "w1"), tt.workerService)
			check("WorkerSocket", WorkerSocket(tt.app, "w1"), tt.workerSock)
			check("WorkerGlob", WorkerGlob(tt.app), tt.glob)
		})
	}
}

// TestWorkerGlobIsolatesApps checks, with the fnmatch rules journalctl and
// systemctl use, that an app's glob matches its own workers and not those
// of an app whose name extends it. They match with FNM_NOESCAPE; path.Match
// does the same once each backslash is doubled.
func TestWorkerGlobIsolatesApps(t *testing.T) {
	apps := []string{"my", "my-app", "my-app-2", "myapp", "my.x"}
	for _, a := range apps {
		for _, b := range apps {
			for _, unit := range []string{WorkerService(b, "w1"), WorkerSocket(b, "w12")} {
				ok, err := path.Match(strings.ReplaceAll(WorkerGlob(a), `\`, `\\`), unit)
				if err != nil {
					t.Fatalf("WorkerGlob(%q) = %q: %v", a, WorkerGlob(a), err)
				}
				if want := a == b; ok != want {
					t.Errorf("WorkerGlob(%q) = %q matches %q: %v, want %v", a, WorkerGlob(a), unit, ok, want)
				}
			}
		}
	}
}

// TestWorkerGenerations checks the names of a worker's later unit pairs
// and that WorkerPatterns matches every generation of that worker and no
// other worker's (w1 is not w12, my is not my-app), with FNM_NOESCAPE as
// systemd matches.
func TestWorkerGenerations(t *testing.T) {
	for _, tc := range []struct {
		gen             int
		service, socket string
	}{
		{0, `berth-my\x2dapp-w1.service`, `berth-my\x2dapp-w1.socket`},
		{1, `berth-my\x2dapp-w1.service`, `berth-my\x2dapp-w1.socket`},
		{2, `berth-my\x2dapp-w1-g2.service`, `berth-my\x2dapp-w1-g2.socket`},
		{17, `berth-my\x2dapp-w1-g17.service`, `berth-my\x2dapp-w1-g17.socket`},
	} {
		if got := WorkerGenService("my-app", "w1", tc.gen); got != tc.service {
			t.Errorf("WorkerGenService(my-app, w1, %d) = %q, want %q", tc.gen, got, tc.service)
		}
		if got := WorkerGenSocket("my-app", "w1", tc.gen); got != tc.socket {
			t.Errorf("WorkerGenSocket(my-app, w1, %d) = %q, want %q", tc.gen, got, tc.socket)
		}
	}
	matches := func(app, worker, unit string) bool {
		for _, p := range WorkerPatterns(app, worker) {
			ok, err := path.Match(strings.ReplaceAll(p, `\`, `\\`), unit)
			if err != nil {
				t.Fatalf("WorkerPatterns(%q, %q): %q: %v", app, worker, p, err)
			}
			if ok {
				return true
			}
		}
		return false
	}
	apps, workers := []string{"my", "my-app", "myapp"}, []string{"w1", "w12", "w2"}
	for _, a := range apps {
		for _, w := range workers {
			for _, b := range apps {
				for _, x := range workers {
					for _, gen := range []int{1, 2, 13} {
						for _, unit := range []string{WorkerGenService(b, x, gen), WorkerGenSocket(b, x, gen)} {
							if got, want := matches(a, w, unit), a == b && w == x; got != want {
								t.Errorf("WorkerPatterns(%q, %q) match %q: %v, want %v", a, w, unit, got, want)
							}
						}
					}
				}
			}
		}
	}
}
