package federation

import (
	"math"
	"testing"
)

func TestParseBandwidth(t *testing.T) {
	tests := []struct {
		in   string
		want Bandwidth
		err  string
	}{
		{in: "10Gbps", want: 1_250_000_000},
		{in: "500Mbps", want: 62_500_000},
		{in: "100Kbps", want: 12_500},
		{in: "100kbps", want: 12_500},
		{in: "8bps", want: 1},
		{in: "1.5Gbps", want: 187_500_000},
		{in: "1Gb/s", want: 125_000_000},
		{in: "1Gibps", want: 1 << 27},
		{in: "500MB/s", want: 500_000_000},
		{in: "1GiB/s", want: 1 << 30},
		{in: "64KiB/s", want: 64 << 10},
		{in: "3B/s", want: 3},
		{in: "2TB/s", want: 2e12},
		{in: "1TiB/s", want: 1 << 40},
		{in: " 10 Gbps ", want: 1_250_000_000},
		{in: "0Gbps", want: 0},
		{in: "1bps", err: `bandwidth "1bps" is not a whole number of bytes per second; use a multiple of 8bps`},
		{in: "0.5B/s", err: `bandwidth "0.5B/s" is not a whole number of bytes per second; use a multiple of 8bps`},
		{in: "10", err: `bandwidth "10" has no unit; write 10Gbps (bits per second) or 10GB/s (bytes per second)`},
		{in: "", err: `bandwidth "" is empty; write a rate such as 10Gbps, 500Mbps or 1GiB/s`},
		{in: "fast", err: `bandwidth "fast" does not start with a number; write a rate such as 10Gbps, 500Mbps or 1GiB/s`},
		{in: "-1Gbps", err: `bandwidth "-1Gbps" is negative; write a rate such as 10Gbps, 500Mbps or 1GiB/s`},
		{in: "1.Gbps", err: `bandwidth "1.Gbps" has a '.' with no digits after it; write a rate such as 10Gbps, 500Mbps or 1GiB/s`},
		{in: "10gbps", err: `bandwidth "10gbps" has unknown unit "gbps" (b is a bit, B a byte); did you mean 10Gbps?`},
		{in: "10GB", err: `bandwidth "10GB" has unit "GB", a size, not a rate; write 10GB/s`},
		{in: "10GBit/s", err: `bandwidth "10GBit/s" has unknown unit "GBit/s"; units are bps, Kbps, Mbps, Gbps, Tbps (bits per second) and B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s (bytes per second)`},
		{in: "9999999TiB/s", err: `bandwidth "9999999TiB/s" is too large; the largest is 8388607TiB/s`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBandwidth(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("ParseBandwidth(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseBandwidth(%q) = %d, %v; want %d", tc.in, int64(got), err, int64(tc.want))
			}
		})
	}
}

func TestBandwidthString(t *testing.T) {
	tests := []struct {
		in   Bandwidth
		want string
	}{
		{0, "0bps"},
		{1, "1B/s"},
		{3, "3B/s"},
		{125, "1Kbps"},
		{12_500, "100Kbps"},
		{62_500_000, "500Mbps"},
		{750_000_000, "6Gbps"},
		{1_250_000_000, "10Gbps"},
		{187_500_000, "1500Mbps"},
		{500_000_000, "4Gbps"}, // 500MB/s: a whole number of kilobits, so bits
		{125e12, "1000Tbps"},
		{64 << 10, "64KiB/s"},
		{1 << 30, "1GiB/s"},
		{1<<30 + 1, "1073741825B/s"},
		{3 << 40, "3TiB/s"},
		{math.MaxInt64, "9223372036854775807B/s"},
		{-5, "-5B/s"},
	}
	for _, tc := range tests {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Bandwidth(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
	}
}

func TestBandwidthRoundTrip(t *testing.T) {
	values := []Bandwidth{0, 1, 7, 8, 125, 999, 1000, 1024, 1 << 20, 62_500_000, 750_000_000, 1<<40 - 1, math.MaxInt64 / 8, math.MaxInt64/8 + 1, math.MaxInt64}
	for v := Bandwidth(1); v < math.MaxInt64/3; v = v*3 + 1 {
		values = append(values, v)
	}
	for _, v := range values {
		s := v.String()
		back, err := ParseBandwidth(s)
		if err != nil || back != v {
			t.Errorf("ParseBandwidth(%d.String() = %q) = %d, %v", int64(v), s, int64(back), err)
		}
	}
	for _, s := range []string{"6Gbps", "10Gbps", "500Mbps", "100Kbps", "64KiB/s", "1GiB/s", "3B/s"} {
		b, err := ParseBandwidth(s)
		if err != nil || b.String() != s {
			t.Errorf("ParseBandwidth(%q).String() = %q, %v", s, b, err)
		}
	}
}

func FuzzParseBandwidth(f *testing.F) {
	for _, s := range []string{"10Gbps", "1.5Gb/s", "64KiB/s", "10", "", "-1bps", "1e3Gbps", "9999999TiB/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBandwidth(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseBandwidth(%q) = %d, negative", s, int64(b))
		}
		if back, err := ParseBandwidth(b.String()); err != nil || back != b {
			t.Fatalf("ParseBandwidth(%q) = %d; its String %q parses to %d, %v", s, int64(b), b.String(), int64(back), err)
		}
	})
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "0", want: 0},
		{in: "123", want: 123},
		{in: "123B", want: 123},
		{in: "4MiB", want: 4 << 20},
		{in: "64MiB", want: 64 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "10GB", want: 10e9},
		{in: "4MB", want: 4e6},
		{in: "1kB", want: 1000},
		{in: "1.5GiB", want: 3 << 29},
		{in: "2TiB", want: 2 << 40},
		{in: "8 GiB", want: 8 << 30},
		{in: "1.5", err: `size "1.5" is not a whole number of bytes`},
		{in: "", err: `size "" is empty; write a size such as 64MiB, 4MB or 0`},
		{in: "-1", err: `size "-1" is negative; write a size such as 64MiB, 4MB or 0`},
		{in: "MiB", err: `size "MiB" does not start with a number; write a size such as 64MiB, 4MB or 0`},
		{in: "64mib", err: `size "64mib" has unknown unit "mib" (b is a bit, B a byte); did you mean 64MiB?`},
		{in: "64Mb", err: `size "64Mb" has unknown unit "Mb" (b is a bit, B a byte); did you mean 64MB?`},
		{in: "64M", err: `size "64M" has unknown unit "M"; units are B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024)`},
		{in: "9999999TiB", err: `size "9999999TiB" is too large; the largest is 8388607TiB`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
