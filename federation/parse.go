package federation

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads and parses the topology file at path; see Parse.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load topology: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a topology file. source names the file in
// errors. On failure it returns no topology and every problem found, each
// a *ParseError of one line, joined in file order, so that the file can be
// fixed in one pass.
func Parse(source string, data []byte) (*Topology, error) {
	d := &decoder{problems: problems{source: source}, regions: make(map[string]int)}
	root := d.document(data)
	if root == nil {
		return nil, d.err()
	}
	t := d.topology(root)
	if err := d.err(); err != nil {
		return nil, err
	}
	t.Source = source
	return t, nil
}

// topLevelKeys are the sections of topology.yaml, in the order they are
// usually written.
func topLevelKeys() []string { return []string{"mesh", "regions", "lines", "mounts", "policies"} }

// document returns the top-level node of the file's single YAML
// document, or nil after reporting why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || err == nil && (len(doc.Content) == 0 || isNull(doc.Content[0])) {
		d.add(1, "", "the file is empty; declare at least mesh and regions, as in the repository's topology.yaml")
		return nil
	}
	if err != nil {
		d.syntax(data, err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(data, err)
		return nil
	default:
		d.add(next.Line, "", "a second YAML document starts here; keep the whole topology in one document")
		return nil
	}
	return doc.Content[0]
}

// syntax reports a YAML syntax error on the line it is on. yaml.v3 leaves
// the line out of some errors ("mapping values are not allowed in this
// context"); then the line is the shortest prefix of the file, in whole
// lines, that fails the same way.
func (d *decoder) syntax(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, text, _ := strings.Cut(rest, ": ")
		if line, convErr := strconv.Atoi(num); convErr == nil && line > 0 {
			d.add(line, "", "invalid YAML: %s", text)
			return
		}
	}
	d.add(syntaxLine(data, err.Error()), "", "invalid YAML: %s", msg)
}

// syntaxLine finds the first line at which data fails to parse with the
// error text want, or 0 when it cannot tell. It parses one prefix per
// line, so it gives up on files larger than any a person writes.
func syntaxLine(data []byte, want string) int {
	const maxLines, maxBytes = 1000, 64 << 10
	if len(data) > maxBytes {
		return 0
	}
	end := 0
	for line := 1; line <= maxLines && end < len(data); line++ {
		if i := bytes.IndexByte(data[end:], '\n'); i >= 0 {
			end += i + 1
		} else {
			end = len(data)
		}
		if err := decodeAll(data[:end]); err != nil && err.Error() == want {
			return line
		}
	}
	return 0
}

// decodeAll parses every document of data and returns the first error.
func decodeAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// topology decodes the top-level mapping. Sections are decoded in the
// order their references need (regions before the lines and mounts that
// name them, mounts before the policies under them), whatever the order
// in the file; problems are sorted into file order at the end.
func (d *decoder) topology(root *yaml.Node) *Topology {
	t := &Topology{}
	top, ok := d.mapping(root, "", `start the file with "mesh: <name>" followed by regions, lines, mounts and policies`, topLevelKeys()...)
	if !ok {
		return t
	}
	if n := d.need(top, "mesh", `name the mesh, e.g. "mesh: demo"`); n != nil {
		if name, ok := d.str(n, "mesh", `name the mesh, e.g. "mesh: demo"`); ok {
			if validName(name) {
				t.Mesh = name
			} else {
				d.add(n.Line, "mesh", "invalid mesh name %q; use lower-case letters, digits and '-', starting with a letter or digit", name)
			}
		}
	}
	if n := d.need(top, "regions", `declare at least one region, e.g. "regions: [{name: idc-bj}]"`); n != nil {
		t.Regions = d.decodeRegions(n)
	}
	if n := top.get("lines"); n != nil {
		t.Lines = d.decodeLines(n)
	}
	var mounts []mountDecl
	mountsKnown := true
	if n := top.get("mounts"); n != nil {
		t.Mounts, mounts, mountsKnown = d.decodeMounts(n)
	}
	if n := top.get("policies"); n != nil {
		t.Policies = d.decodePolicies(n, mounts, mountsKnown)
	}
	return t
}
