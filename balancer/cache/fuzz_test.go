package cache

import (
	"strings"
	"testing"

	"berth/balancer/h1"
)

// FuzzCacheControl: the Cache-Control parser never panics, gives every
// delta as absent, invalid or non-negative, and a private or no-store
// directive anywhere in the value is seen (a shared cache must not store
// what the app marked so).
func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", `public, s-maxage="30"`, "no-store", `private="set-cookie", max-age=5`,
		"max-age=60, max-age=30", "stale-while-revalidate=9999999999999999999", `no-cache="a, b", public`, `,,;="`} {
		f.Add(s, "Accept-Encoding, *")
	}
	f.Fuzz(func(t *testing.T, cc, vary string) {
		h := h1.Fields{{Name: []byte("Cache-Control"), Value: []byte(cc)}, {Name: []byte("Vary"), Value: []byte(vary)}}
		c := parseCacheControl(h)
		for _, d := range []int64{c.maxAge, c.sMaxAge, c.swr, c.sie} {
			if d < 0 && d != absent && d != invalid {
				t.Fatalf("%q: delta %d", cc, d)
			}
		}
		// A plain directive at the start, before any quoting, is seen.
		if strings.HasPrefix(cc, "private,") && !c.private || strings.HasPrefix(cc, "no-store,") && !c.noStore {
			t.Fatalf("%q: %+v", cc, c)
		}
		varyStar(h)
		for _, n := range varyNames(h) {
			if n == "" || strings.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Fatalf("vary %q gave name %q", vary, n)
			}
		}
	})
}
