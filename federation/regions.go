package federation

import "gopkg.in/yaml.v3"

// decodeRegions decodes regions: and fills d.regions for the references
// that follow.
func (d *decoder) decodeRegions(n *yaml.Node) []Region {
	const hint = `write each region as "- name: idc-bj"`
	items, ok := d.list(n, "regions", hint)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.add(n.Line, "regions", "no regions declared; declare at least one, e.g. \"- name: idc-bj\"")
		return nil
	}
	var regions []Region
	for i, item := range items {
		field := index("regions", i)
		f, ok := d.mapping(item, field, hint, "name")
		if !ok {
			continue
		}
		v := d.need(f, "name", `name the region, e.g. "- name: idc-bj"`)
		if v == nil {
			continue
		}
		name, ok := d.str(v, field+".name", `name the region, e.g. "- name: idc-bj"`)
		if !ok {
			continue
		}
		if first, dup := d.regions[name]; dup {
			d.add(v.Line, field+".name", "duplicate region %q (first at line %d); region names must be unique", name, first)
			continue
		}
		d.regions[name] = v.Line
		if !validName(name) {
			d.add(v.Line, field+".name", "invalid region name %q; use lower-case letters, digits and '-', starting with a letter or digit", name)
			continue
		}
		d.regionList = append(d.regionList, name)
		regions = append(regions, Region{Name: name})
	}
	return regions
}
