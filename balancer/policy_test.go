package balancer

import "testing"

func ups(loads ...int64) []*Upstream {
	var us []*Upstream
	for i, l := range loads {
		u := &Upstream{Name: string(rune('a' + i))}
		u.inflight.Store(l)
		us = append(us, u)
	}
	return us
}

func TestLeastBusy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		loads []int64
		skip  []int
		held  []int
		want  string // "" for nil
	}{
		{name: "empty", loads: nil, want: ""},
		{name: "picks the idlest", loads: []int64{3, 1, 2}, want: "b"},
		{name: "ties go to the first", loads: []int64{0, 0, 0}, want: "a"},
		{name: "ties past the first go to the first of them", loads: []int64{2, 1, 1}, want: "b"},
		{name: "skips tried", loads: []int64{0, 5, 1}, skip: []int{0}, want: "c"},
		{name: "all skipped", loads: []int64{0, 1}, skip: []int{0, 1}, want: ""},
		{name: "skips held", loads: []int64{0, 5, 1}, held: []int{0}, want: "c"},
		{name: "all held", loads: []int64{0, 1}, held: []int{0, 1}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us := ups(tc.loads...)
			var skip []*Upstream
			for _, i := range tc.skip {
				skip = append(skip, us[i])
			}
			for _, i := range tc.held {
				us[i].hold.Store(HoldBlocked)
			}
			got := leastBusy(us, skip)
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tc.want {
				t.Errorf("got %q, want %q", name, tc.want)
			}
		})
	}
}

// TestLeastBusyFirstAvailable: requests one at a time all go to the first
// worker; one that comes while it is busy goes to the next.
func TestLeastBusyFirstAvailable(t *testing.T) {
	us := ups(0, 0)
	for i := 0; i < 10; i++ {
		if u := leastBusy(us, nil); u.Name != "a" {
			t.Fatalf("idle request %d went to %s, want a", i, u.Name)
		}
	}
	us[0].inflight.Add(1)
	if u := leastBusy(us, nil); u.Name != "b" {
		t.Errorf("with a busy, the request went to %s, want b", u.Name)
	}
}
