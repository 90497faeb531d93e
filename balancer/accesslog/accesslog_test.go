package accesslog_test

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"berth/balancer"
	"berth/balancer/accesslog"
	"berth/balancer/h1"
	"berth/balancer/requestid"
	"berth/balancer/trust"
)

type fakeWriter struct{ status int }

func (w *fakeWriter) WriteHead(r *h1.Response) error { w.status = r.Status; return nil }
func (w *fakeWriter) Write(p []byte) (int, error)    { return len(p), nil }
func (w *fakeWriter) Flush() error                   { return nil }
func (w *fakeWriter) Status() int                    { return w.status }
func (w *fakeWriter) Written() int64                 { return 12 }

func TestEntry(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	up := &balancer.Upstream{Name: "w2"}
	proxy := balancer.HandlerFunc(func(x *balancer.Exchange) {
		x.Worker = up
		x.W.WriteHead(&h1.Response{Status: 502})
	})
	chain := requestid.New(accesslog.New(proxy, log, trust.List{}), trust.List{})
	req := &h1.Request{Method: []byte("POST"), Target: []byte("/pay?x=1"), Header: h1.Fields{{Name: []byte("X-Request-ID"), Value: []byte("abc-1")}}}
	chain.ServeExchange(&balancer.Exchange{Req: req, W: &fakeWriter{},
		Peer: netip.MustParseAddrPort("127.0.0.1:9"), Client: netip.MustParseAddrPort("203.0.113.5:9")})
	line := buf.String()
	for _, want := range []string{"msg=request", "berth.method=POST", "berth.path=/pay", "berth.status=502", "berth.bytes=12",
		"berth.worker=w2", "berth.request_id=abc-1", "berth.client=203.0.113.5", "berth.duration=", "berth.queue=0", "berth.cache=-"} {
		if !strings.Contains(line, want) {
			t.Errorf("entry lacks %q:\n%s", want, line)
		}
	}
}

func TestClientFromTrustedProxy(t *testing.T) {
	next := balancer.HandlerFunc(func(x *balancer.Exchange) { x.W.WriteHead(&h1.Response{Status: 200}) })
	for _, tt := range []struct {
		name, peer, xff, want string
	}{
		{name: "trusted proxy's last entry", peer: "127.0.0.1:9", xff: "198.51.100.1, 203.0.113.5", want: "berth.client=203.0.113.5"},
		{name: "untrusted peer's field ignored", peer: "192.0.2.1:9", xff: "203.0.113.5", want: "berth.client=192.0.2.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := accesslog.New(next, slog.New(slog.NewTextHandler(&buf, nil)), trust.List{})
			peer := netip.MustParseAddrPort(tt.peer)
			req := &h1.Request{Method: []byte("GET"), Target: []byte("/"), Header: h1.Fields{{Name: []byte("X-Forwarded-For"), Value: []byte(tt.xff)}}}
			l.ServeExchange(&balancer.Exchange{Req: req, W: &fakeWriter{}, Peer: peer, Client: peer})
			if !strings.Contains(buf.String(), tt.want+" ") && !strings.HasSuffix(strings.TrimSpace(buf.String()), tt.want) {
				t.Errorf("entry lacks %q:\n%s", tt.want, buf.String())
			}
		})
	}
}
