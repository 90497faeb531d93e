package balancer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
)

// Admin is berth's admin API: HTTP on a Unix socket in the app's runtime
// directory, mode 0600 (root, or the user berth runs as). `berth status`,
// `berth restart` and the like talk to it. Endpoints are added with
// Handle, HandleJSON and HandleAction before Serve.
type Admin struct {
	path string
	l    net.Listener
	mux  *http.ServeMux
	srv  *http.Server
}

// ListenAdmin opens the admin socket at path, replacing a stale one.
func ListenAdmin(path string, log *slog.Logger) (*Admin, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	a := &Admin{path: path, l: l, mux: http.NewServeMux()}
	a.srv = &http.Server{Handler: a.mux, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return a, nil
}

// Handle adds an endpoint (a net/http ServeMux pattern such as "GET /x").
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// HandleJSON adds a GET endpoint answering what get returns, as JSON.
func (a *Admin) HandleJSON(path string, get func() any) {
	a.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(get())
	})
}

// HandleAction adds a POST endpoint that runs do; an error is answered
// with 409 and its text, success with ok.
func (a *Admin) HandleAction(path, ok string, do func(ctx context.Context, r *http.Request) error) {
	a.mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		if err := do(r.Context(), r); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		io.WriteString(w, ok+"\n")
	})
}

// Serve answers on the admin socket until Close.
func (a *Admin) Serve() error {
	err := a.srv.Serve(a.l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the admin API and removes its socket.
func (a *Admin) Close() error {
	err := a.srv.Close()
	os.Remove(a.path)
	return err
}
