package limits

import "testing"

// FuzzParseSize: what it accepts is not negative, and what FormatSize
// writes with a unit reads back the same.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "10K", "100M", "1G", "1kb", "-1", "9223372036854775807", "8589934591G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		out := FormatSize(n)
		if m, err := ParseSize(out); err == nil && m != n {
			t.Fatalf("ParseSize(%q) = %d, FormatSize = %q, read back %d", s, n, out, m)
		}
	})
}
