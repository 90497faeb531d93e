package requestid

import (
	"net/netip"
	"strings"
	"testing"

	"berth/balancer"
	"berth/balancer/h1"
	"berth/balancer/trust"
)

func TestRequestID(t *testing.T) {
	loop := netip.MustParseAddrPort("127.0.0.1:5000")
	other := netip.MustParseAddrPort("203.0.113.9:5000")
	tests := []struct {
		name     string
		peer     netip.AddrPort
		sent     string // "" sends none
		wantKept bool
	}{
		{name: "trusted id kept", peer: loop, sent: "abc-123", wantKept: true},
		{name: "untrusted id replaced", peer: other, sent: "abc-123"},
		{name: "trusted but malformed replaced", peer: loop, sent: "has space"},
		{name: "trusted but too long replaced", peer: loop, sent: strings.Repeat("x", MaxLen+1)},
		{name: "none generated", peer: other},
	}
	var seen string
	l := New(balancer.HandlerFunc(func(x *balancer.Exchange) {
		var n int
		for _, f := range x.Req.Header {
			if strings.EqualFold(string(f.Name), Field) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the next link saw %d %s fields, want 1", n, Field)
		}
		seen = string(x.Req.Header.Get(Field))
	}), trust.List{})
	ids := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &h1.Request{Header: h1.Fields{{Name: []byte("Host"), Value: []byte("h")}}}
			if tt.sent != "" {
				req.Header.Add([]byte("X-Request-Id"), []byte(tt.sent))
			}
			l.ServeExchange(&balancer.Exchange{Req: req, Peer: tt.peer})
			if tt.wantKept {
				if seen != tt.sent {
					t.Errorf("next link saw id %q, want the trusted peer's %q", seen, tt.sent)
				}
				return
			}
			if seen == tt.sent || len(seen) < 18 || ids[seen] {
				t.Errorf("next link saw id %q, want a new generated one (sent %q)", seen, tt.sent)
			}
			ids[seen] = true
			if req.Header.Has(Field) {
				t.Errorf("the generated id is left in the request after the link returned")
			}
		})
	}
}

func TestGenerateAllocs(t *testing.T) {
	l := New(balancer.HandlerFunc(func(*balancer.Exchange) {}), trust.List{})
	req := &h1.Request{Header: make(h1.Fields, 0, 8)}
	x := &balancer.Exchange{Req: req}
	l.ServeExchange(x)
	if n := testing.AllocsPerRun(1000, func() { l.ServeExchange(x) }); n != 0 {
		t.Errorf("generating an id allocates %v times per request, want 0", n)
	}
}

func BenchmarkGenerate(b *testing.B) {
	l := New(balancer.HandlerFunc(func(*balancer.Exchange) {}), trust.List{})
	req := &h1.Request{Header: h1.Fields{{Name: []byte("Host"), Value: []byte("h")}, {Name: []byte("Accept"), Value: []byte("*/*")}}}
	x := &balancer.Exchange{Req: req}
	b.ReportAllocs()
	for b.Loop() {
		l.ServeExchange(x)
	}
}
