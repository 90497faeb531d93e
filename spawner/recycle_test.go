package spawner

import "testing"

func TestRecycleKind(t *testing.T) {
	for _, tc := range []struct{ why, want string }{
		{"max requests: served 20 (limit 20)", "max_requests"},
		{"memory: 160 MiB over the limit of 150 MiB", "memory"},
		{"event loop blocked past the maximum request time", "blocked"},
		{"operator asked", "other"},
	} {
		if got := RecycleKind(tc.why); got != tc.want {
			t.Errorf("RecycleKind(%q) = %q, want %q", tc.why, got, tc.want)
		}
	}
}
