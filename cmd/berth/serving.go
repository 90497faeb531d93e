package main

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"berth/activation"
	"berth/spawner"
)

// logServing logs the one line that says berth is up, once its first
// workers are ready: "serving APP on http://127.0.0.1:3000 with 2 workers
// (ready in 0.4 s)". Nothing when no worker is ready (the app fails to
// start: that is logged already).
func logServing(log *slog.Logger, app string, listeners []activation.Listener, st spawner.Status, since time.Time) {
	if st.Ready == 0 {
		return
	}
	log.Info(servingLine(app, listeners, st.Ready, time.Since(since)))
}

// servingLine is logServing's message. It is a sentence, not a constant
// message with attributes: it is the line an operator looks for.
func servingLine(app string, listeners []activation.Listener, workers int, took time.Duration) string {
	var urls []string
	for _, l := range listeners {
		urls = append(urls, listenerURL(l.Addr()))
	}
	where := strings.Join(urls, " and ")
	if where == "" {
		where = "no listener"
	}
	noun := "workers"
	if workers == 1 {
		noun = "worker"
	}
	return fmt.Sprintf("serving %s on %s with %d %s (ready in %.1f s)", app, where, workers, noun, took.Seconds())
}

// listenerURL is how a client reaches addr: http://host:port, with
// localhost for an any-address listener, or unix:/path.
func listenerURL(addr net.Addr) string {
	if addr.Network() == "unix" {
		return "unix:" + addr.String()
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
