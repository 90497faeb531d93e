package logging

import (
	"context"
	"log/slog"
)

// dedup drops from a record the attributes that the logger already carries
// with the same value: berth's logger carries app=NAME, and a package that
// names the app in its own attributes (the spawner's "worker started" app=…)
// would show it twice.
type dedup struct {
	inner slog.Handler
	have  map[string]slog.Value // top-level attributes added by WithAttrs
	group bool                  // a group is open: record attributes are not top-level
}

func (h *dedup) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *dedup) Handle(ctx context.Context, r slog.Record) error {
	if h.group || len(h.have) == 0 {
		return h.inner.Handle(ctx, r)
	}
	dup := false
	r.Attrs(func(a slog.Attr) bool {
		if v, ok := h.have[a.Key]; ok && v.Equal(a.Value) {
			dup = true
			return false
		}
		return true
	})
	if !dup {
		return h.inner.Handle(ctx, r)
	}
	r2 := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if v, ok := h.have[a.Key]; !ok || !v.Equal(a.Value) {
			r2.AddAttrs(a)
		}
		return true
	})
	return h.inner.Handle(ctx, r2)
}

func (h *dedup) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := &dedup{inner: h.inner.WithAttrs(as), have: h.have, group: h.group}
	if !h.group {
		h2.have = make(map[string]slog.Value, len(h.have)+len(as))
		for k, v := range h.have {
			h2.have[k] = v
		}
		for _, a := range as {
			h2.have[a.Key] = a.Value.Resolve()
		}
	}
	return h2
}

func (h *dedup) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &dedup{inner: h.inner.WithGroup(name), have: h.have, group: true}
}
