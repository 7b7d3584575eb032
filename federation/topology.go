package federation

import (
	"strings"
	"time"

	"github.com/lakemesh/lakemesh/policy"
)

// Topology is the parsed, validated topology.yaml: the whole mesh.
type Topology struct {
	Mesh     string
	Regions  []Region
	Lines    []Line
	Mounts   []Mount
	Policies []policy.Rule
	// Source is the file the topology was read from, for error messages.
	Source string
}

// Region is one region of the mesh: one cache cluster, one Consul
// datacenter, one NATS domain.
type Region struct {
	Name string
}

// Bandwidth is a rate in bytes per second.
type Bandwidth int64

// Line is a dedicated link between two regions; full duplex, so Budget
// holds in each direction separately.
type Line struct {
	Between   [2]string // region names, as written
	Capacity  Bandwidth
	Budget    Bandwidth // what lakemesh may use of it, all classes together
	RTT       time.Duration
	CostPerGB float64 // currency units per 10^9 bytes crossed
}

// Mount places a lake at a path of the namespace.
type Mount struct {
	Path   string // absolute, cleaned, e.g. "/lake/s3-use1"
	UFS    string // root URI of the lake: file://, s3://, hdfs://
	Region string // home region: where the lake is read from
	// MetadataTTL bounds how long stat and list results are served from
	// cache before the lake is asked again.
	MetadataTTL time.Duration
	ReadOnly    bool
}

// DefaultMetadataTTL is a mount's metadata TTL when the file does not set one.
const DefaultMetadataTTL = 30 * time.Second

// Resolve maps an absolute namespace path to the mount that holds it (the
// longest mount path that is a prefix of it at a "/" boundary) and the
// path inside that mount. ok is false when no mount holds the path.
func (t *Topology) Resolve(path string) (m Mount, rel string, ok bool) {
	best := -1
	for i, mt := range t.Mounts {
		if path == mt.Path || strings.HasPrefix(path, mt.Path+"/") {
			if best < 0 || len(mt.Path) > len(t.Mounts[best].Path) {
				best = i
			}
		}
	}
	if best < 0 {
		return Mount{}, "", false
	}
	m = t.Mounts[best]
	return m, strings.TrimPrefix(strings.TrimPrefix(path, m.Path), "/"), true
}

// Region returns the region with the given name.
func (t *Topology) Region(name string) (Region, bool) {
	for _, r := range t.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}

// PolicySet returns the topology's policies as a policy.Set, which answers
// what applies to any path.
func (t *Topology) PolicySet() *policy.Set { return policy.NewSet(t.Policies) }
