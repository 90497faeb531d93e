package units

import (
	"strings"
	"testing"
)

// TestInitTLSCredentials: certificates become LoadCredential= lines and
// the matching berth serve flags, in both managers' units.
func TestInitTLSCredentials(t *testing.T) {
	for _, user := range []bool{false, true} {
		in := Init{Name: "shop", AppDir: "/srv/shop", Port: 443, Berth: "/usr/bin/berth", UserManager: user,
			TLS: []TLSPair{{"/etc/ssl/a.pem", "/etc/ssl/private/a.key"}, {"/etc/ssl/b 50%.pem", "/etc/ssl/b.key"}}}
		files, err := in.Files()
		if err != nil {
			t.Fatal(err)
		}
		svc := string(files[1].Data)
		for _, want := range []string{
			"\nLoadCredential=tls-0.crt:/etc/ssl/a.pem\n",
			"\nLoadCredential=tls-0.key:/etc/ssl/private/a.key\n",
			"\nLoadCredential=tls-1.crt:/etc/ssl/b 50%%.pem\n",
			"\nLoadCredential=tls-1.key:/etc/ssl/b.key\n",
			" --tls-cert tls-0.crt --tls-key tls-0.key --tls-cert tls-1.crt --tls-key tls-1.key",
		} {
			if !strings.Contains(svc, want) {
				t.Errorf("user=%v: service lacks %q:\n%s", user, want, svc)
			}
		}
	}
	if _, err := (Init{Name: "shop", AppDir: "/srv/shop", Port: 443, TLS: []TLSPair{{"a.pem", "/k"}}}).Files(); err == nil {
		t.Error("relative certificate path accepted")
	}
}
