package federation

import (
	"fmt"
	"math"
)

// bandwidthUnits are the units ParseBandwidth accepts. b is a bit and B a
// byte; K/M/G/T are powers of 1000 and Ki/Mi/Gi/Ti powers of 1024.
func bandwidthUnits() []unit {
	return []unit{
		{"bps", 1, true}, {"Kbps", kilo, true}, {"kbps", kilo, true}, {"Mbps", mega, true},
		{"Gbps", giga, true}, {"Tbps", tera, true},
		{"Kibps", kibi, true}, {"Mibps", mebi, true}, {"Gibps", gibi, true}, {"Tibps", tebi, true},
		{"b/s", 1, true}, {"Kb/s", kilo, true}, {"kb/s", kilo, true}, {"Mb/s", mega, true},
		{"Gb/s", giga, true}, {"Tb/s", tera, true},
		{"B/s", 1, false}, {"KB/s", kilo, false}, {"kB/s", kilo, false}, {"MB/s", mega, false},
		{"GB/s", giga, false}, {"TB/s", tera, false},
		{"KiB/s", kibi, false}, {"MiB/s", mebi, false}, {"GiB/s", gibi, false}, {"TiB/s", tebi, false},
	}
}

const bandwidthUnitList = "bps, Kbps, Mbps, Gbps, Tbps (bits per second) and B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s (bytes per second)"

// ParseBandwidth parses a human rate: bits per second ("10Gbps",
// "500Mbps", "100Kbps", "1.5Gb/s") or bytes per second ("500MB/s",
// "1GiB/s", "64KiB/s"). K, M, G and T are powers of 1000, Ki, Mi, Gi and
// Ti powers of 1024; b is a bit and B a byte, so case matters. A bare
// number is an error: nobody can tell whether "10" means bits or bytes.
// The rate must be a whole number of bytes per second ("1bps" is not).
func ParseBandwidth(s string) (Bandwidth, error) {
	q, problem := splitQuantity(s)
	if problem != "" {
		return 0, fmt.Errorf("bandwidth %q %s; write a rate such as 10Gbps, 500Mbps or 1GiB/s", s, problem)
	}
	if q.unit == "" {
		return 0, fmt.Errorf("bandwidth %q has no unit; write %sGbps (bits per second) or %sGB/s (bytes per second)", s, q.num, q.num)
	}
	units := bandwidthUnits()
	u, ok, hint := lookupUnit(units, q.unit)
	if !ok {
		if _, isSize, _ := lookupUnit(units, q.unit+"/s"); isSize {
			return 0, fmt.Errorf("bandwidth %q has unit %q, a size, not a rate; write %s%s/s", s, q.unit, q.num, q.unit)
		}
		if hint != "" {
			return 0, fmt.Errorf("bandwidth %q has unknown unit %q (b is a bit, B a byte); did you mean %s%s?", s, q.unit, q.num, hint)
		}
		return 0, fmt.Errorf("bandwidth %q has unknown unit %q; units are %s", s, q.unit, bandwidthUnitList)
	}
	n, whole, fits := scale(q.num, u)
	if !fits {
		return 0, fmt.Errorf("bandwidth %q is too large; the largest is %s", s, Bandwidth(math.MaxInt64/tebi*tebi))
	}
	if !whole {
		return 0, fmt.Errorf("bandwidth %q is not a whole number of bytes per second; use a multiple of 8bps", s)
	}
	return Bandwidth(n), nil
}

// String formats b for people and for topology.yaml: in bits per second
// ("6Gbps") when the rate is a whole number of kilobits, the way lines are
// sold, else in bytes per second ("64KiB/s", "3B/s"). ParseBandwidth
// reads every result back to the same value.
func (b Bandwidth) String() string {
	if b < 0 {
		return fmt.Sprintf("%dB/s", int64(b)) // not a valid rate; shown as is
	}
	if b == 0 {
		return "0bps"
	}
	if b <= math.MaxInt64/8 && (b*8)%kilo == 0 {
		return formatScaled(int64(b)*8, []unit{{"Tbps", tera, true}, {"Gbps", giga, true}, {"Mbps", mega, true}, {"Kbps", kilo, true}})
	}
	return formatScaled(int64(b), []unit{{"TiB/s", tebi, false}, {"GiB/s", gibi, false}, {"MiB/s", mebi, false}, {"KiB/s", kibi, false}, {"B/s", 1, false}})
}
