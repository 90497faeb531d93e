//go:build berthdebug

package main

// A local build with `-tags berthdebug` serves net/http/pprof on the
// address in BERTH_PPROF (e.g. 127.0.0.1:6060), with the mutex and block
// profiles on: for measuring the request path, never in a package.

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

func init() {
	addr := os.Getenv("BERTH_PPROF")
	if addr == "" {
		return
	}
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(10000) // one sample per 10 µs blocked
	go func() {
		slog.Error("pprof server", "addr", addr, "err", http.ListenAndServe(addr, nil))
	}()
}
