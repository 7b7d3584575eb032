package federation

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the yaml.Node tree of one topology file. Every helper
// reports what is wrong into problems, with the node's line, and returns
// ok=false; the caller then skips whatever depended on that value, so one
// mistake is reported once and not again by every check that follows.
type decoder struct {
	problems

	// regions are the declared region names (valid or not, so that a
	// misspelt declaration does not also fail every reference to it);
	// regionList holds the valid ones in file order, for hints.
	regions    map[string]int
	regionList []string
}

// fields is a mapping whose keys have been checked against the known set.
type fields struct {
	node    *yaml.Node
	field   string
	values  map[string]*yaml.Node
	unknown bool // some key was reported unknown, duplicate or malformed
}

// get returns the value of key, or nil when the mapping does not have it.
func (f fields) get(key string) *yaml.Node { return f.values[key] }

// member is the field path of key inside field: "lines[0].budget".
func member(field, key string) string {
	if !simpleKey(key) {
		key = strconv.Quote(key)
	}
	if field == "" {
		return key
	}
	return field + "." + key
}

// index is the field path of item i of the list field: "lines[0]".
func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

func simpleKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// kindName says what a node is, for "expected ..., got ..." messages.
func kindName(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return "nothing"
	default:
		return fmt.Sprintf("the value %q", n.Value)
	}
}

// plain reports an alias: the topology is small enough to write out, and
// following aliases would let a tiny file expand into a huge one.
func (d *decoder) plain(n *yaml.Node, field string) bool {
	if n.Kind == yaml.AliasNode {
		d.add(n.Line, field, "YAML aliases (*name) are not supported; write the value out in full")
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// mapping checks that n is a mapping whose keys are among known, each
// written once. hint says what would be right when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, field, hint string, known ...string) (fields, bool) {
	f := fields{node: n, field: field, values: make(map[string]*yaml.Node)}
	if !d.plain(n, field) {
		return f, false
	}
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, field, "expected a mapping, got %s; %s", kindName(n), hint)
		return f, false
	}
	firstLine := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, field, "a key is %s; keys are single words, known keys are %s", kindName(k), strings.Join(known, ", "))
			f.unknown = true
			continue
		}
		key := k.Value
		if first, dup := firstLine[key]; dup {
			d.add(k.Line, member(field, key), "duplicate key (first at line %d); write each key once", first)
			f.unknown = true
			continue
		}
		firstLine[key] = k.Line
		if !contains(known, key) {
			d.add(k.Line, member(field, key), "unknown key; known keys are %s", strings.Join(known, ", "))
			f.unknown = true
			continue
		}
		f.values[key] = v
	}
	return f, true
}

// need returns the value of a required key, or reports it missing at the
// line of the mapping.
func (d *decoder) need(f fields, key, hint string) *yaml.Node {
	v := f.get(key)
	if v == nil {
		d.add(f.node.Line, member(f.field, key), "required key is missing; %s", hint)
	}
	return v
}

// list checks that n is a list and returns its items; an empty value
// (null) is an empty list.
func (d *decoder) list(n *yaml.Node, field, hint string) ([]*yaml.Node, bool) {
	if !d.plain(n, field) {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n.Line, field, "expected a list, got %s; %s", kindName(n), hint)
		return nil, false
	}
	return n.Content, true
}

// str returns a non-empty single value.
func (d *decoder) str(n *yaml.Node, field, hint string) (string, bool) {
	if !d.plain(n, field) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.add(n.Line, field, "expected a single value, got %s; %s", kindName(n), hint)
		return "", false
	}
	if isNull(n) || n.Value == "" {
		d.add(n.Line, field, "is empty; %s", hint)
		return "", false
	}
	return n.Value, true
}

// boolean returns a YAML boolean (true or false).
func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	s, ok := d.str(n, field, "write true or false")
	if !ok {
		return false, false
	}
	if n.ShortTag() != "!!bool" {
		d.add(n.Line, field, "%q is not a boolean; write true or false", s)
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.add(n.Line, field, "%q is not a boolean; write true or false", s)
		return false, false
	}
	return b, true
}

// duration returns a Go duration ("30s", "48h", "1h30m"); positive
// demands > 0, else >= 0.
func (d *decoder) duration(n *yaml.Node, field string, positive bool, hint string) (time.Duration, bool) {
	s, ok := d.str(n, field, hint)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.add(n.Line, field, "%q is not a duration; %s", s, hint)
		return 0, false
	case v < 0:
		d.add(n.Line, field, "%s is negative; %s", s, hint)
		return 0, false
	case v == 0 && positive:
		d.add(n.Line, field, "%s is not above zero; %s", s, hint)
		return 0, false
	}
	return v, true
}

// nonNegative returns a finite number >= 0.
func (d *decoder) nonNegative(n *yaml.Node, field, hint string) (float64, bool) {
	s, ok := d.str(n, field, hint)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil:
		d.add(n.Line, field, "%q is not a number; %s", s, hint)
		return 0, false
	case math.IsNaN(v) || math.IsInf(v, 0):
		d.add(n.Line, field, "%q is not a finite number; %s", s, hint)
		return 0, false
	case v < 0:
		d.add(n.Line, field, "%s is negative; %s", s, hint)
		return 0, false
	}
	return v, true
}

// bandwidth returns a rate above zero and the text it was written as.
func (d *decoder) bandwidth(n *yaml.Node, field, hint string) (Bandwidth, string, bool) {
	s, ok := d.str(n, field, hint)
	if !ok {
		return 0, "", false
	}
	b, err := ParseBandwidth(s)
	s = strings.TrimSpace(s) // ParseBandwidth allows spaces around the rate
	if err != nil {
		d.add(n.Line, field, "%v", err)
		return 0, "", false
	}
	if b == 0 {
		d.add(n.Line, field, "%s is not above zero; %s", s, hint)
		return 0, "", false
	}
	return b, s, true
}

// size returns a byte size ("64MiB", "0").
func (d *decoder) size(n *yaml.Node, field, hint string) (int64, bool) {
	s, ok := d.str(n, field, hint)
	if !ok {
		return 0, false
	}
	v, err := ParseSize(s)
	if err != nil {
		d.add(n.Line, field, "%v", err)
		return 0, false
	}
	return v, true
}

// validName says whether s may name a region or the mesh:
// [a-z0-9][a-z0-9-]*. Names go into NATS subjects, Consul datacenter
// names and metric labels, which all accept this much.
func validName(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// regionRef returns a reference to a declared region.
func (d *decoder) regionRef(n *yaml.Node, field string) (string, bool) {
	name, ok := d.str(n, field, "name a region declared under regions")
	if !ok {
		return "", false
	}
	if _, declared := d.regions[name]; !declared {
		if len(d.regionList) == 0 {
			d.add(n.Line, field, "unknown region %q; declare it under regions", name)
		} else {
			d.add(n.Line, field, "unknown region %q; declared regions are %s", name, strings.Join(d.regionList, ", "))
		}
		return name, false
	}
	return name, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
