package trust

import (
	"net/netip"
	"testing"
)

func TestTrusts(t *testing.T) {
	mixed, err := Parse([]string{"10.0.0.0/24", "2001:db8::/32", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		list List
		peer string // "" is a Unix-socket peer
		want bool
	}{
		{name: "zero trusts loopback v4", list: List{}, peer: "127.0.0.1:5", want: true},
		{name: "zero trusts loopback v6", list: List{}, peer: "[::1]:5", want: true},
		{name: "zero trusts mapped loopback", list: List{}, peer: "[::ffff:127.0.0.1]:5", want: true},
		{name: "zero refuses others", list: List{}, peer: "10.0.0.1:5", want: false},
		{name: "unix always", list: New(), peer: "", want: true},
		{name: "empty New refuses loopback", list: New(), peer: "127.0.0.1:5", want: false},
		{name: "in v4 CIDR", list: mixed, peer: "10.0.0.200:5", want: true},
		{name: "mapped in v4 CIDR", list: mixed, peer: "[::ffff:10.0.0.9]:5", want: true},
		{name: "outside v4 CIDR", list: mixed, peer: "10.0.1.1:5", want: false},
		{name: "in v6 CIDR", list: mixed, peer: "[2001:db8::5]:5", want: true},
		{name: "single address", list: mixed, peer: "192.0.2.7:5", want: true},
		{name: "next to single address", list: mixed, peer: "192.0.2.8:5", want: false},
		{name: "explicit list drops loopback", list: mixed, peer: "127.0.0.1:5", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ap netip.AddrPort
			if tt.peer != "" {
				ap = netip.MustParseAddrPort(tt.peer)
			}
			if got := tt.list.Trusts(ap); got != tt.want {
				t.Errorf("List(%s).Trusts(%q) = %v, want %v", tt.list, tt.peer, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "nonsense", "10.0.0/8", ""} {
		if _, err := Parse([]string{s}); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", s)
		}
	}
}
