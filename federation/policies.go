package federation

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lakemesh/lakemesh/policy"
)

func policyKeys() []string {
	return []string{"path", "pin", "ttl", "no_cache", "write_mode", "readahead", "residency"}
}

// decodePolicies decodes policies: into rules. A rule's path must lie in
// a mount (so that it can ever match), and its residency must name
// declared regions including the mount's home region (else the bytes
// could not be read at all).
//
// mountsKnown is false when the mounts: section itself could not be read;
// then no policy is reported as outside every mount.
func (d *decoder) decodePolicies(n *yaml.Node, mounts []mountDecl, mountsKnown bool) []policy.Rule {
	const hint = `write each policy as "- path: /lake/name/dir" with the settings for that subtree`
	items, ok := d.list(n, "policies", hint)
	if !ok {
		return nil
	}
	var rules []policy.Rule
	paths := make(map[string]int) // comparable path -> line of the first policy for it
	for i, item := range items {
		field := index("policies", i)
		f, ok := d.mapping(item, field, hint, policyKeys()...)
		if !ok {
			continue
		}
		r := policy.Rule{Line: item.Line}
		var home *mountDecl
		good := true
		if v := d.need(f, "path", "give the subtree the policy applies to, e.g. path: /lake/name/dir"); v == nil {
			good = false
		} else if p, ok := d.str(v, field+".path", "give the subtree the policy applies to, e.g. /lake/name/dir"); !ok {
			good = false
		} else {
			r.Path = p
			if problem := pathProblem(p); problem != "" {
				d.add(v.Line, field+".path", "%s", problem)
				good = false
			}
			if c, ok := comparable(p); ok {
				if first, dup := paths[c]; dup {
					d.add(v.Line, field+".path", "duplicate policy for %q (first at line %d); merge the two entries", c, first)
					good = false
				} else {
					paths[c] = v.Line
				}
				if home = mountOf(c, mounts); home == nil && mountsKnown && !anyUnusable(mounts) {
					d.add(v.Line, field+".path", "%q is not under any mount; %s", c, mountedPaths(mounts))
					good = false
				}
			}
		}
		set := 0
		if v := f.get("pin"); v != nil {
			b, ok := d.boolean(v, field+".pin")
			r.Pin, good, set = &b, good && ok, set+1
		}
		if v := f.get("no_cache"); v != nil {
			b, ok := d.boolean(v, field+".no_cache")
			r.NoCache, good, set = &b, good && ok, set+1
		}
		if v := f.get("ttl"); v != nil {
			ttl, ok := d.duration(v, field+".ttl", true, "write how long cached pages stay, e.g. 48h")
			r.TTL, good, set = &ttl, good && ok, set+1
		}
		if v := f.get("write_mode"); v != nil {
			if s, ok := d.str(v, field+".write_mode", "write through or back"); !ok {
				good = false
			} else if mode := policy.WriteMode(s); mode != policy.WriteThrough && mode != policy.WriteBack {
				d.add(v.Line, field+".write_mode", "%q is not a write mode; write through or back", s)
				good = false
			} else {
				r.WriteMode = &mode
			}
			set++
		}
		if v := f.get("readahead"); v != nil {
			size, ok := d.size(v, field+".readahead", "write a size such as 64MiB, or 0 to disable readahead")
			r.Readahead, good, set = &size, good && ok, set+1
		}
		if v := f.get("residency"); v != nil {
			regions, ok := d.residency(v, field+".residency", home)
			r.Residency, good, set = regions, good && ok, set+1
		}
		if set == 0 && !f.unknown { // an unknown key is the setting that was meant
			d.add(item.Line, field, "sets nothing; add pin, ttl, no_cache, write_mode, readahead or residency")
			good = false
		}
		if good {
			rules = append(rules, r)
		}
	}
	return rules
}

// residency decodes a non-empty list of distinct declared regions that
// includes the home region of the policy's mount.
func (d *decoder) residency(n *yaml.Node, field string, home *mountDecl) ([]string, bool) {
	const hint = "list the regions these bytes may be in, e.g. residency: [idc-bj]"
	items, ok := d.list(n, field, hint)
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		d.add(n.Line, field, "is empty; %s, or remove the key", hint)
		return nil, false
	}
	var regions []string
	good := true
	for j, item := range items {
		name, ok := d.regionRef(item, index(field, j))
		switch {
		case !ok:
			good = false
		case contains(regions, name):
			d.add(item.Line, index(field, j), "region %q is listed twice; list each region once", name)
			good = false
		default:
			regions = append(regions, name)
		}
	}
	if good && home != nil && home.region != "" && !contains(regions, home.region) {
		d.add(n.Line, field, "leaves out %s, the home region of mount %q (line %d); list it too, or the bytes could never be read", home.region, home.path, home.line)
		good = false
	}
	return regions, good
}

// mountOf returns the mount a policy path lies in, or nil.
func mountOf(p string, mounts []mountDecl) *mountDecl {
	for i := range mounts {
		if mounts[i].path != "" && Within(p, mounts[i].path) {
			return &mounts[i]
		}
	}
	return nil
}

// anyUnusable says whether some mount path could not be read at all; a
// policy under it must not then be reported as outside every mount.
func anyUnusable(mounts []mountDecl) bool {
	for _, m := range mounts {
		if m.path == "" {
			return true
		}
	}
	return false
}

func mountedPaths(mounts []mountDecl) string {
	var quoted []string
	for _, m := range mounts {
		if m.path != "" {
			quoted = append(quoted, strconv.Quote(m.path))
		}
	}
	if len(quoted) == 0 {
		return "declare a mount for it under mounts"
	}
	return "mounted paths are " + strings.Join(quoted, ", ")
}
