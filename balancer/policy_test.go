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
		start int
		want  string // "" for nil
	}{
		{name: "empty", loads: nil, want: ""},
		{name: "picks the idlest", loads: []int64{3, 1, 2}, want: "b"},
		{name: "ties rotate from start", loads: []int64{0, 0, 0}, start: 1, want: "b"},
		{name: "ties rotate past the end", loads: []int64{0, 0, 0}, start: 5, want: "c"},
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
			got := leastBusy(us, skip, tc.start)
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

func TestLeastBusySpreadsIdleRequests(t *testing.T) {
	us := ups(0, 0)
	count := map[string]int{}
	for i := 0; i < 10; i++ {
		count[leastBusy(us, nil, i).Name]++
	}
	if count["a"] != 5 || count["b"] != 5 {
		t.Errorf("idle workers got %v, want 5 each", count)
	}
}
