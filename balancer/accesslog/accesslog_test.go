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
	chain := requestid.New(accesslog.New(proxy, log), trust.List{})
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
