package balancer

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"berth/balancer/trust"
)

// TestForwardingFieldsFollowTrust checks the forwarding fields the app
// sees: a trusted peer's are kept and extended, anyone else's replaced.
func TestForwardingFieldsFollowTrust(t *testing.T) {
	up, _ := worker(t, "w1", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]string{
			"xff": r.Header.Values("X-Forwarded-For"), "proto": r.Header.Values("X-Forwarded-Proto"),
			"host": r.Header.Values("X-Forwarded-Host"), "fwd": r.Header.Values("Forwarded"),
		})
	})
	forged := map[string]string{
		"X-Forwarded-For":   "198.51.100.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "other.example",
		"Forwarded":         "for=198.51.100.1;proto=https",
	}
	tests := []struct {
		name    string
		trusted trust.List
		want    map[string][]string
	}{
		{
			name:    "loopback trusted by default",
			trusted: trust.List{},
			want: map[string][]string{
				"xff": {"198.51.100.1, 127.0.0.1"}, "proto": {"https"}, "host": {"other.example"},
				"fwd": {`for=198.51.100.1;proto=https, for=127.0.0.1;host="shop.example";proto=http`},
			},
		},
		{
			name:    "CIDR list trusts 127.0.0.0/8",
			trusted: trust.New(netip.MustParsePrefix("127.0.0.0/8")),
			want: map[string][]string{
				"xff": {"198.51.100.1, 127.0.0.1"}, "proto": {"https"}, "host": {"other.example"},
				"fwd": {`for=198.51.100.1;proto=https, for=127.0.0.1;host="shop.example";proto=http`},
			},
		},
		{
			name:    "untrusted peer replaced",
			trusted: trust.New(netip.MustParsePrefix("10.0.0.0/8")),
			want: map[string][]string{
				"xff": {"127.0.0.1"}, "proto": {"http"}, "host": {"shop.example"},
				"fwd": {`for=127.0.0.1;host="shop.example";proto=http`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool(PoolConfig{})
			p.Add(&Upstream{Name: up.Name, Network: up.Network, Addr: up.Addr})
			px, err := NewProxy(ProxyConfig{Pool: p, Trusted: tt.trusted})
			if err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv, _ := NewServer(ServerConfig{Handler: px, Listeners: []net.Listener{l}})
			go srv.Serve(t.Context())
			defer srv.Close()
			req, _ := http.NewRequest("GET", "http://"+l.Addr().String()+"/", nil)
			req.Host = "shop.example"
			for k, v := range forged {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string][]string
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if len(got[k]) != len(want) || len(want) > 0 && got[k][0] != want[0] {
					t.Errorf("app saw %s = %q, want %q", k, got[k], want)
				}
			}
		})
	}
}
