package federation

import (
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

func mountKeys() []string { return []string{"path", "ufs", "region", "metadata_ttl", "read_only"} }

// mountDecl is what the policy checks need to know of a mount, kept even
// when the mount itself had problems so they are not reported twice.
type mountDecl struct {
	path   string // comparable form; "" when the path is unusable
	line   int
	region string // "" unless a declared region
}

// decodeMounts decodes mounts: and checks that no two mount paths are
// equal or nested. ok is false when the section is not a list at all.
func (d *decoder) decodeMounts(n *yaml.Node) (mounts []Mount, decls []mountDecl, ok bool) {
	const hint = `write each mount as "- path: /lake/name" with ufs and region`
	items, ok := d.list(n, "mounts", hint)
	if !ok {
		return nil, nil, false
	}
	for i, item := range items {
		field := index("mounts", i)
		f, ok := d.mapping(item, field, hint, mountKeys()...)
		if !ok {
			continue
		}
		m := Mount{MetadataTTL: DefaultMetadataTTL}
		decl := mountDecl{line: item.Line}
		good := true
		if v := d.need(f, "path", "give the path the lake appears at, e.g. path: /lake/name"); v == nil {
			good = false
		} else if p, ok := d.str(v, field+".path", "give the path the lake appears at, e.g. /lake/name"); !ok {
			good = false
		} else {
			m.Path = p
			decl.line = v.Line
			good = d.mountPath(v, field+".path", p, decls) && good
			decl.path, _ = comparable(p)
			if decl.path == "/" {
				decl.path = ""
			}
		}
		if v := d.need(f, "ufs", "give the lake's root URI, e.g. ufs: s3://bucket/prefix"); v == nil {
			good = false
		} else if u, ok := d.str(v, field+".ufs", "give the lake's root URI, e.g. s3://bucket/prefix"); !ok {
			good = false
		} else {
			m.UFS = u
			good = d.ufs(v, field+".ufs", u) && good
		}
		if v := d.need(f, "region", "name the lake's home region, e.g. region: idc-bj"); v == nil {
			good = false
		} else if r, ok := d.regionRef(v, field+".region"); !ok {
			good = false
		} else {
			m.Region, decl.region = r, r
		}
		if v := f.get("metadata_ttl"); v != nil {
			var ok bool
			m.MetadataTTL, ok = d.duration(v, field+".metadata_ttl", true, "write how long listings may be cached, e.g. 30s")
			good = good && ok
		}
		if v := f.get("read_only"); v != nil {
			var ok bool
			m.ReadOnly, ok = d.boolean(v, field+".read_only")
			good = good && ok
		}
		decls = append(decls, decl)
		if good {
			mounts = append(mounts, m)
		}
	}
	return mounts, decls, true
}

// mountPath checks a mount path on its own and against the mounts before
// it.
func (d *decoder) mountPath(n *yaml.Node, field, p string, before []mountDecl) bool {
	if problem := pathProblem(p); problem != "" {
		d.add(n.Line, field, "%s", problem)
		return false
	}
	if p == "/" {
		d.add(n.Line, field, `"/" is the whole namespace; mount the lake below it, e.g. /lake/name`)
		return false
	}
	for _, o := range before {
		switch {
		case o.path == "":
		case o.path == p:
			d.add(n.Line, field, "%q duplicates mount %q (line %d); mount paths must be unique", p, o.path, o.line)
			return false
		case Within(p, o.path) || Within(o.path, p):
			d.add(n.Line, field, "%q overlaps mount %q (line %d); mount paths must not nest", p, o.path, o.line)
			return false
		}
	}
	return true
}

// ufs checks that a lake URI has a scheme, "://" and a location. The
// scheme is not checked against the registered adapters: federation does
// not know them, and the node that opens the lake reports an unknown one.
func (d *decoder) ufs(n *yaml.Node, field, u string) bool {
	const hint = "write scheme://location, e.g. s3://bucket/prefix, hdfs://namenode:8020/path or file:///data"
	scheme, rest, found := strings.Cut(u, "://")
	if !found || !validScheme(scheme) {
		d.add(n.Line, field, "%q is not a URI; %s", u, hint)
		return false
	}
	if rest == "" {
		d.add(n.Line, field, "%q has nothing after %q; %s", u, scheme+"://", hint)
		return false
	}
	parsed, err := url.Parse(u)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		d.add(n.Line, field, "%q is not a valid URI (%v); %s", u, err, hint)
		return false
	}
	if _, hasPassword := parsed.User.Password(); hasPassword {
		d.add(n.Line, field, "%q holds a password; secrets never go in the topology file, use the environment or the lake's standard credential files", parsed.Redacted())
		return false
	}
	return true
}

// validScheme is RFC 3986's scheme: a letter, then letters, digits, + - .
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// Mount returns the mount whose path is exactly path.
func (t *Topology) Mount(path string) (Mount, bool) {
	for _, m := range t.Mounts {
		if m.Path == path {
			return m, true
		}
	}
	return Mount{}, false
}
