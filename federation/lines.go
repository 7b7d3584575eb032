package federation

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

func lineKeys() []string { return []string{"between", "capacity", "budget", "rtt", "cost_per_gb"} }

// decodeLines decodes lines: and checks that each joins two distinct
// declared regions, at most one line per pair, with 0 < budget <= capacity.
func (d *decoder) decodeLines(n *yaml.Node) []Line {
	items, ok := d.list(n, "lines", `write each line as "- between: [idc-bj, gpu-wlcb]" with capacity and budget`)
	if !ok {
		return nil
	}
	var lines []Line
	pairs := make(map[[2]string]int) // ends in sorted order -> line of the first
	for i, item := range items {
		field := index("lines", i)
		f, ok := d.mapping(item, field, `write a line as "- between: [idc-bj, gpu-wlcb]" with capacity and budget`, lineKeys()...)
		if !ok {
			continue
		}
		l, good := Line{}, true
		if v := d.need(f, "between", "name the two regions the line joins, e.g. between: [idc-bj, gpu-wlcb]"); v == nil {
			good = false
		} else if ends, ok := d.lineEnds(v, field+".between"); !ok {
			good = false
		} else {
			l.Between = ends
			key := ends
			if key[1] < key[0] {
				key[0], key[1] = key[1], key[0]
			}
			if first, dup := pairs[key]; dup {
				d.add(v.Line, field+".between", "duplicate line between %s and %s (first at line %d); declare each pair of regions once", ends[0], ends[1], first)
				good = false
			} else {
				pairs[key] = v.Line
			}
		}
		var capRaw, budgetRaw string
		capOK, budgetOK := false, false
		if v := d.need(f, "capacity", "give the line's capacity, e.g. capacity: 10Gbps"); v != nil {
			l.Capacity, capRaw, capOK = d.bandwidth(v, field+".capacity", "give the line's capacity, e.g. 10Gbps")
		}
		if v := d.need(f, "budget", "give the share of the capacity lakemesh may use, e.g. budget: 6Gbps"); v != nil {
			l.Budget, budgetRaw, budgetOK = d.bandwidth(v, field+".budget", "give the share of the capacity lakemesh may use, e.g. 6Gbps")
			if capOK && budgetOK && l.Budget > l.Capacity {
				d.add(v.Line, field+".budget", "%s is above the line's capacity %s; the budget may be at most the capacity",
					showBandwidth(budgetRaw, l.Budget), showBandwidth(capRaw, l.Capacity))
				budgetOK = false
			}
		}
		good = good && capOK && budgetOK
		if v := f.get("rtt"); v != nil {
			var ok bool
			l.RTT, ok = d.duration(v, field+".rtt", false, "write the round-trip time as a duration, e.g. 20ms")
			good = good && ok
		}
		if v := f.get("cost_per_gb"); v != nil {
			var ok bool
			l.CostPerGB, ok = d.nonNegative(v, field+".cost_per_gb", "write the cost of 10^9 bytes crossing the line, e.g. 0.01")
			good = good && ok
		}
		if good {
			lines = append(lines, l)
		}
	}
	return lines
}

// lineEnds decodes between: two distinct declared regions.
func (d *decoder) lineEnds(n *yaml.Node, field string) ([2]string, bool) {
	var ends [2]string
	const hint = "a line joins two regions, e.g. between: [idc-bj, gpu-wlcb]"
	items, ok := d.list(n, field, hint)
	if !ok {
		return ends, false
	}
	if len(items) != 2 {
		d.add(n.Line, field, "expected 2 regions, got %d; %s", len(items), hint)
		return ends, false
	}
	good := true
	for j, item := range items {
		name, ok := d.regionRef(item, index(field, j))
		ends[j] = name
		good = good && ok
	}
	if good && ends[0] == ends[1] {
		d.add(n.Line, field, "joins region %q to itself; a line joins two different regions", ends[0])
		return ends, false
	}
	return ends, good
}

// showBandwidth shows a rate as the user wrote it, with its canonical
// form when that differs, so rates in different units can be compared.
func showBandwidth(raw string, b Bandwidth) string {
	if s := b.String(); s != raw {
		return fmt.Sprintf("%s (%s)", raw, s)
	}
	return raw
}

// LinesOf returns the lines that have region at one end, in file order.
func (t *Topology) LinesOf(region string) []Line {
	var out []Line
	for _, l := range t.Lines {
		if l.Between[0] == region || l.Between[1] == region {
			out = append(out, l)
		}
	}
	return out
}

// LineBetween returns the line joining regions a and b, in either order.
func (t *Topology) LineBetween(a, b string) (Line, bool) {
	for _, l := range t.Lines {
		if l.Between == [2]string{a, b} || l.Between == [2]string{b, a} {
			return l, true
		}
	}
	return Line{}, false
}
