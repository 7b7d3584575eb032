package federation

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/policy"
)

func ptr[T any](v T) *T { return &v }

// The example at the repository's root is what a newcomer runs first; it
// must always parse, and say what DESIGN.md says it does.
func TestLoadRepositoryTopology(t *testing.T) {
	top, err := Load(filepath.Join("..", "topology.yaml"))
	if err != nil {
		t.Fatalf("the repository's topology.yaml does not parse:\n%v", err)
	}
	want := &Topology{
		Mesh:    "demo",
		Regions: []Region{{"idc-bj"}, {"aws-use1"}, {"gpu-wlcb"}},
		Lines: []Line{
			{Between: [2]string{"idc-bj", "gpu-wlcb"}, Capacity: 10e9 / 8, Budget: 6e9 / 8, RTT: 20 * time.Millisecond, CostPerGB: 0.01},
			{Between: [2]string{"aws-use1", "gpu-wlcb"}, Capacity: 2e9 / 8, Budget: 1e9 / 8, RTT: 70 * time.Millisecond},
		},
		Mounts: []Mount{
			{Path: "/lake/hdfs-bj", UFS: "hdfs://namenode:8020/warehouse", Region: "idc-bj", MetadataTTL: 30 * time.Second},
			{Path: "/lake/s3-use1", UFS: "s3://training-data/", Region: "aws-use1", MetadataTTL: DefaultMetadataTTL},
		},
		Source: filepath.Join("..", "topology.yaml"),
	}
	got := *top
	got.Policies = nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("topology:\n%+v\nwant:\n%+v", got, *want)
	}
	if len(top.Policies) != 2 {
		t.Fatalf("%d policies, want 2", len(top.Policies))
	}
	pin, pii := top.Policies[0], top.Policies[1]
	if pin.Path != "/lake/s3-use1/notes/recent" || pin.Pin == nil || !*pin.Pin || pin.TTL == nil || *pin.TTL != 48*time.Hour {
		t.Errorf("first policy = %+v, want pin and ttl 48h on /lake/s3-use1/notes/recent", pin)
	}
	if pii.Path != "/lake/hdfs-bj/pii" || !reflect.DeepEqual(pii.Residency, []string{"idc-bj"}) {
		t.Errorf("second policy = %+v, want residency [idc-bj] on /lake/hdfs-bj/pii", pii)
	}
	if e := top.PolicySet().For("/lake/hdfs-bj/pii/users.parquet"); e.MayEnter("gpu-wlcb") {
		t.Errorf("PII may enter gpu-wlcb: %+v", e)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of a missing file = %v, want a not-exist error naming %s", err, path)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, top *Topology)
	}{
		{"one region, nothing else", "mesh: solo\nregions:\n  - name: r1\n", func(t *testing.T, top *Topology) {
			if top.Mesh != "solo" || len(top.Regions) != 1 || top.Lines != nil || top.Mounts != nil || top.Policies != nil {
				t.Errorf("got %+v", top)
			}
		}},
		{"empty optional sections", "mesh: solo\nregions: [{name: r1}]\nlines:\nmounts: []\npolicies:\n", func(t *testing.T, top *Topology) {
			if len(top.Lines)+len(top.Mounts)+len(top.Policies) != 0 {
				t.Errorf("got %+v", top)
			}
		}},
		{"sections in any order", "policies:\n  - path: /lake/a/x\n    no_cache: true\nmounts:\n  - path: /lake/a\n    ufs: file:///a\n    region: b\nlines:\n  - between: [b, a]\n    capacity: 1GiB/s\n    budget: 100MiB/s\nregions:\n  - name: a\n  - name: b\nmesh: m\n", func(t *testing.T, top *Topology) {
			if len(top.Policies) != 1 || len(top.Mounts) != 1 || len(top.Lines) != 1 || len(top.Regions) != 2 {
				t.Errorf("got %+v", top)
			}
			if l := top.Lines[0]; l.Capacity != 1<<30 || l.Budget != 100<<20 || l.Between != [2]string{"b", "a"} {
				t.Errorf("line = %+v", l)
			}
		}},
		{"mount options", head + "mounts:\n  - path: /lake/a\n    ufs: s3://bucket/prefix\n    region: aws-use1\n    metadata_ttl: 5m\n    read_only: true\n", func(t *testing.T, top *Topology) {
			want := Mount{Path: "/lake/a", UFS: "s3://bucket/prefix", Region: "aws-use1", MetadataTTL: 5 * time.Minute, ReadOnly: true}
			if !reflect.DeepEqual(top.Mounts, []Mount{want}) {
				t.Errorf("mounts = %+v, want %+v", top.Mounts, want)
			}
		}},
		{"every policy setting", head + "mounts:\n  - path: /lake/a\n    ufs: file:///data/a\n    region: idc-bj\npolicies:\n  - path: /lake/a\n    pin: false\n    ttl: 1h30m\n    no_cache: true\n    write_mode: back\n    readahead: 0\n    residency: [idc-bj, gpu-wlcb]\n", func(t *testing.T, top *Topology) {
			want := policy.Rule{Path: "/lake/a", Pin: ptr(false), TTL: ptr(90 * time.Minute), NoCache: ptr(true),
				WriteMode: ptr(policy.WriteBack), Readahead: ptr(int64(0)), Residency: []string{"idc-bj", "gpu-wlcb"}, Line: 11}
			if !reflect.DeepEqual(top.Policies, []policy.Rule{want}) {
				t.Errorf("policies = %+v, want %+v", top.Policies, want)
			}
		}},
		{"rates and sizes in every form", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 1.5Gb/s\n    budget: 500Mbps\n    rtt: 0\n    cost_per_gb: 0\n  - between: [idc-bj, aws-use1]\n    capacity: \"64KiB/s\"\n    budget: 100Kbps\nmounts:\n  - path: /m\n    ufs: file:///m\n    region: idc-bj\npolicies:\n  - path: /m/x\n    readahead: 4MB\n", func(t *testing.T, top *Topology) {
			if l := top.Lines[0]; l.Capacity != 187_500_000 || l.Budget != 62_500_000 || l.RTT != 0 || l.CostPerGB != 0 {
				t.Errorf("line 0 = %+v", l)
			}
			if l := top.Lines[1]; l.Capacity != 65536 || l.Budget != 12500 {
				t.Errorf("line 1 = %+v", l)
			}
			if r := top.Policies[0]; *r.Readahead != 4_000_000 {
				t.Errorf("readahead = %d", *r.Readahead)
			}
		}},
		{"anchors without aliases", "mesh: demo\nregions:\n  - &first {name: a}\n", func(t *testing.T, top *Topology) {
			if top.Regions[0].Name != "a" {
				t.Errorf("regions = %+v", top.Regions)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			top, err := Parse("t.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if top.Source != "t.yaml" {
				t.Errorf("Source = %q", top.Source)
			}
			tc.check(t, top)
			checkInvariants(t, top)
		})
	}
}

func TestResolve(t *testing.T) {
	top := &Topology{Mounts: []Mount{
		{Path: "/lake/s3-use1", Region: "aws-use1"},
		{Path: "/lake/hdfs-bj", Region: "idc-bj"},
		{Path: "/models", Region: "gpu-wlcb"},
	}}
	tests := []struct {
		path  string
		mount string // "" when the path is in no mount
		rel   string
	}{
		{"/lake/s3-use1", "/lake/s3-use1", ""},
		{"/lake/s3-use1/", "/lake/s3-use1", ""},
		{"/lake/s3-use1/notes/recent/a.txt", "/lake/s3-use1", "notes/recent/a.txt"},
		{"/lake/s3-use1x", "", ""},
		{"/lake/s3-use1x/a", "", ""},
		{"/lake/s3-use", "", ""},
		{"/lake", "", ""},
		{"/", "", ""},
		{"", "", ""},
		{"lake/s3-use1/a", "", ""},
		{"/models/llama/7b", "/models", "llama/7b"},
		{"/lake/hdfs-bj/pii/x", "/lake/hdfs-bj", "pii/x"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			m, rel, ok := top.Resolve(tc.path)
			if ok != (tc.mount != "") || m.Path != tc.mount || rel != tc.rel {
				t.Errorf("Resolve(%q) = %q, %q, %v; want %q, %q", tc.path, m.Path, rel, ok, tc.mount, tc.rel)
			}
		})
	}
}

// Resolve picks the longest mount when mounts nest. A parsed topology
// never has nested mounts; one built by hand (a test, a future API) may.
func TestResolveLongestPrefix(t *testing.T) {
	top := &Topology{Mounts: []Mount{{Path: "/a"}, {Path: "/a/b/c"}, {Path: "/a/b"}}}
	for path, want := range map[string]string{"/a/x": "/a", "/a/b": "/a/b", "/a/b/cd": "/a/b", "/a/b/c/d": "/a/b/c"} {
		if m, _, _ := top.Resolve(path); m.Path != want {
			t.Errorf("Resolve(%q) = %q, want %q", path, m.Path, want)
		}
	}
}

func TestTopologyLookups(t *testing.T) {
	top, err := Load(filepath.Join("..", "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := top.Mount("/lake/s3-use1"); !ok || m.Region != "aws-use1" {
		t.Errorf("Mount(/lake/s3-use1) = %+v, %v", m, ok)
	}
	for _, p := range []string{"/lake/s3-use1/x", "/lake", "/lake/s3-use1/"} {
		if _, ok := top.Mount(p); ok {
			t.Errorf("Mount(%q) found a mount; it takes exact paths only", p)
		}
	}
	linesOf := func(region string) (ends [][2]string) {
		for _, l := range top.LinesOf(region) {
			ends = append(ends, l.Between)
		}
		return ends
	}
	for region, want := range map[string][][2]string{
		"gpu-wlcb": {{"idc-bj", "gpu-wlcb"}, {"aws-use1", "gpu-wlcb"}},
		"idc-bj":   {{"idc-bj", "gpu-wlcb"}},
		"nowhere":  nil,
	} {
		if got := linesOf(region); !reflect.DeepEqual(got, want) {
			t.Errorf("LinesOf(%s) = %v, want %v", region, got, want)
		}
	}
	tests := []struct {
		a, b   string
		budget Bandwidth
		ok     bool
	}{
		{"idc-bj", "gpu-wlcb", 6e9 / 8, true},
		{"gpu-wlcb", "idc-bj", 6e9 / 8, true},
		{"gpu-wlcb", "aws-use1", 1e9 / 8, true},
		{"idc-bj", "aws-use1", 0, false},
		{"idc-bj", "idc-bj", 0, false},
	}
	for _, tc := range tests {
		if l, ok := top.LineBetween(tc.a, tc.b); ok != tc.ok || l.Budget != tc.budget {
			t.Errorf("LineBetween(%s, %s) = %+v, %v; want budget %v, %v", tc.a, tc.b, l, ok, tc.budget, tc.ok)
		}
	}
	if r, ok := top.Region("aws-use1"); !ok || r.Name != "aws-use1" {
		t.Errorf("Region(aws-use1) = %+v, %v", r, ok)
	}
}

func TestDirsAbove(t *testing.T) {
	for _, tc := range []struct {
		p, root string
		want    []string
	}{
		{"/lake/a/x/y/f", "/lake/a", []string{"/lake/a/x/y", "/lake/a/x", "/lake/a"}},
		{"/lake/a/f", "/lake/a", []string{"/lake/a"}},
		{"/lake/a", "/lake/a", nil},
		{"/lake/ab/f", "/lake/a", nil},
	} {
		if got := DirsAbove(tc.p, tc.root); !slices.Equal(got, tc.want) {
			t.Errorf("DirsAbove(%q, %q) = %q, want %q", tc.p, tc.root, got, tc.want)
		}
	}
}
