package federation

import (
	"fmt"
	"math"
)

// sizeUnits are the units ParseSize accepts: B, K/M/G/T powers of 1000
// and Ki/Mi/Gi/Ti powers of 1024, always followed by B (a byte).
func sizeUnits() []unit {
	return []unit{
		{"B", 1, false}, {"KB", kilo, false}, {"kB", kilo, false}, {"MB", mega, false},
		{"GB", giga, false}, {"TB", tera, false},
		{"KiB", kibi, false}, {"MiB", mebi, false}, {"GiB", gibi, false}, {"TiB", tebi, false},
	}
}

// ParseSize parses a byte size: "4MiB", "10GB", "512KiB", "1.5GiB", or a
// bare number of bytes ("123", "0"). KB, MB, GB and TB are powers of 1000,
// KiB, MiB, GiB and TiB powers of 1024. Sizes are never negative. The
// cache node's flags and the policies' readahead both use it.
func ParseSize(s string) (int64, error) {
	q, problem := splitQuantity(s)
	if problem != "" {
		return 0, fmt.Errorf("size %q %s; write a size such as 64MiB, 4MB or 0", s, problem)
	}
	u := unit{"B", 1, false}
	if q.unit != "" {
		var ok bool
		var hint string
		u, ok, hint = lookupUnit(sizeUnits(), q.unit)
		if !ok {
			if hint != "" {
				return 0, fmt.Errorf("size %q has unknown unit %q (b is a bit, B a byte); did you mean %s%s?", s, q.unit, q.num, hint)
			}
			return 0, fmt.Errorf("size %q has unknown unit %q; units are B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024)", s, q.unit)
		}
	}
	n, whole, fits := scale(q.num, u)
	if !fits {
		return 0, fmt.Errorf("size %q is too large; the largest is %dTiB", s, int64(math.MaxInt64/tebi))
	}
	if !whole {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return n, nil
}
