package federation

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/policy"
)

// FuzzParse feeds Parse arbitrary files. It must never panic; when it
// fails, every problem is a one-line *ParseError in file order; when it
// succeeds, the invariants of a Topology hold.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("..", "topology.yaml")); err == nil {
		f.Add(data)
	}
	f.Add([]byte(mountsAB))
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := Parse("fuzz.yaml", data)
		if err != nil {
			if top != nil {
				t.Fatalf("Parse returned a topology with its errors")
			}
			checkParseErrors(t, err)
			return
		}
		checkInvariants(t, top)
	})
}

// checkInvariants checks what package doc promises of a parsed Topology.
func checkInvariants(t *testing.T, top *Topology) {
	t.Helper()
	if !validName(top.Mesh) {
		t.Errorf("mesh name %q is not valid", top.Mesh)
	}
	declared := make(map[string]bool)
	for _, r := range top.Regions {
		if !validName(r.Name) || declared[r.Name] {
			t.Errorf("region %q is invalid or declared twice", r.Name)
		}
		declared[r.Name] = true
	}
	if len(declared) == 0 {
		t.Errorf("no regions")
	}
	pairs := make(map[[2]string]bool)
	for _, l := range top.Lines {
		a, b := l.Between[0], l.Between[1]
		if !declared[a] || !declared[b] || a == b {
			t.Errorf("line %v joins undeclared or equal regions", l.Between)
		}
		if b < a {
			a, b = b, a
		}
		if pairs[[2]string{a, b}] {
			t.Errorf("two lines between %s and %s", a, b)
		}
		pairs[[2]string{a, b}] = true
		if l.Budget <= 0 || l.Budget > l.Capacity {
			t.Errorf("line %v: budget %v, capacity %v", l.Between, l.Budget, l.Capacity)
		}
		if l.RTT < 0 || l.CostPerGB < 0 || math.IsNaN(l.CostPerGB) || math.IsInf(l.CostPerGB, 0) {
			t.Errorf("line %v: rtt %v, cost %v", l.Between, l.RTT, l.CostPerGB)
		}
	}
	for i, m := range top.Mounts {
		if pathProblem(m.Path) != "" || m.Path == "/" {
			t.Errorf("mount path %q is not absolute and clean", m.Path)
		}
		if !declared[m.Region] || m.MetadataTTL <= 0 || !strings.Contains(m.UFS, "://") {
			t.Errorf("mount %+v: bad region, metadata TTL or ufs", m)
		}
		for _, o := range top.Mounts[:i] {
			if Within(m.Path, o.Path) || Within(o.Path, m.Path) {
				t.Errorf("mounts %q and %q nest", o.Path, m.Path)
			}
		}
		if got, rel, ok := top.Resolve(m.Path + "/x"); !ok || got.Path != m.Path || rel != "x" {
			t.Errorf("Resolve(%q) = %q, %q, %v", m.Path+"/x", got.Path, rel, ok)
		}
	}
	for _, r := range top.Policies {
		if pathProblem(r.Path) != "" {
			t.Errorf("policy path %q is not absolute and clean", r.Path)
		}
		m, _, ok := top.Resolve(r.Path)
		if !ok {
			t.Errorf("policy path %q is in no mount", r.Path)
		}
		for _, region := range r.Residency {
			if !declared[region] {
				t.Errorf("policy %q: residency names undeclared region %q", r.Path, region)
			}
		}
		if r.Residency != nil && ok && !policy.NewSet([]policy.Rule{r}).For(r.Path).MayEnter(m.Region) {
			t.Errorf("policy %q keeps its bytes out of their home region %s", r.Path, m.Region)
		}
		if r.TTL != nil && *r.TTL <= 0 || r.Readahead != nil && *r.Readahead < 0 ||
			r.WriteMode != nil && *r.WriteMode != policy.WriteThrough && *r.WriteMode != policy.WriteBack {
			t.Errorf("policy %+v has an invalid setting", r)
		}
	}
}

// FuzzResolve checks that Resolve answers with the mount that holds a
// path at a "/" boundary, and that path is the mount plus rel.
func FuzzResolve(f *testing.F) {
	top, err := Load(filepath.Join("..", "topology.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/lake/s3-use1", "/lake/s3-use1x", "/lake/s3-use1/a/b", "/", "", "/lake/hdfs-bj//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		m, rel, ok := top.Resolve(p)
		if !ok {
			for _, mt := range top.Mounts {
				if Within(p, mt.Path) {
					t.Fatalf("Resolve(%q) found nothing, but %q holds it", p, mt.Path)
				}
			}
			return
		}
		if !Within(p, m.Path) {
			t.Fatalf("Resolve(%q) = %q, which does not hold it", p, m.Path)
		}
		if rel != "" && m.Path+"/"+rel != p {
			t.Fatalf("Resolve(%q) = %q + %q", p, m.Path, rel)
		}
	})
}
