package policy

import (
	"reflect"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestSetFor(t *testing.T) {
	rules := []Rule{
		// Deliberately not in path order: NewSet sorts.
		{Path: "/lake/s3-use1/notes/recent", Pin: ptr(true), TTL: ptr(48 * time.Hour)},
		{Path: "/lake/s3-use1", TTL: ptr(time.Hour), Readahead: ptr(int64(8 << 20))},
		{Path: "/lake/hdfs-bj/pii", Residency: []string{"idc-bj"}},
		{Path: "/lake/hdfs-bj/pii/public", Residency: []string{"idc-bj", "gpu-wlcb"}},
		{Path: "/lake/hdfs-bj/pii/public/raw", NoCache: ptr(true)},
		{Path: "/lake/hdfs-bj/scratch", WriteMode: ptr(WriteBack), Readahead: ptr(int64(0))},
		{Path: "/lake/hdfs-bj/scratch/sync", WriteMode: ptr(WriteThrough)},
		{Path: "/lake/s3-use1/notes/recent/old", Pin: ptr(false)},
	}
	defaults := Effective{WriteMode: WriteThrough, Readahead: DefaultReadahead}
	tests := []struct {
		name string
		path string
		want Effective
	}{
		{"no rule", "/lake/other/x", defaults},
		{"root", "/", defaults},
		{"rule's own path", "/lake/s3-use1", Effective{TTL: time.Hour, WriteMode: WriteThrough, Readahead: 8 << 20}},
		{"below a rule", "/lake/s3-use1/a/b.bin", Effective{TTL: time.Hour, WriteMode: WriteThrough, Readahead: 8 << 20}},
		{"not at a / boundary", "/lake/s3-use1x/a", defaults},
		{"longer overrides what it sets, inherits the rest", "/lake/s3-use1/notes/recent/x",
			Effective{Pin: true, TTL: 48 * time.Hour, WriteMode: WriteThrough, Readahead: 8 << 20}},
		{"deeper unsets pin", "/lake/s3-use1/notes/recent/old/y",
			Effective{Pin: false, TTL: 48 * time.Hour, WriteMode: WriteThrough, Readahead: 8 << 20}},
		{"residency", "/lake/hdfs-bj/pii/users", Effective{WriteMode: WriteThrough, Readahead: DefaultReadahead, Residency: []string{"idc-bj"}}},
		{"most specific residency wins whole", "/lake/hdfs-bj/pii/public/a",
			Effective{WriteMode: WriteThrough, Readahead: DefaultReadahead, Residency: []string{"idc-bj", "gpu-wlcb"}}},
		{"residency inherited past a rule that does not set it", "/lake/hdfs-bj/pii/public/raw/a",
			Effective{NoCache: true, WriteMode: WriteThrough, Readahead: DefaultReadahead, Residency: []string{"idc-bj", "gpu-wlcb"}}},
		{"write back and readahead off", "/lake/hdfs-bj/scratch/tmp", Effective{WriteMode: WriteBack, Readahead: 0}},
		{"write mode overridden back to through", "/lake/hdfs-bj/scratch/sync/f", Effective{WriteMode: WriteThrough, Readahead: 0}},
		{"sibling of a rule", "/lake/hdfs-bj/scratchpad", defaults},
	}
	s := NewSet(rules)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.For(tc.path); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("For(%q) =\n%+v\nwant\n%+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestSetForRootRuleAndEdges(t *testing.T) {
	s := NewSet([]Rule{{Path: "/", Readahead: ptr(int64(1 << 20))}, {Path: "/a", Pin: ptr(true)}})
	if got := s.For("/x/y"); got.Readahead != 1<<20 || got.Pin {
		t.Errorf("For(/x/y) = %+v, want the root rule only", got)
	}
	if got := s.For("/a/b"); got.Readahead != 1<<20 || !got.Pin {
		t.Errorf("For(/a/b) = %+v, want both rules", got)
	}
	var nilSet *Set
	if got := nilSet.For("/a"); got.WriteMode != WriteThrough || got.Readahead != DefaultReadahead {
		t.Errorf("nil Set gives %+v, want defaults", got)
	}
	if got := NewSet(nil).For("/a"); got.WriteMode != WriteThrough || got.Readahead != DefaultReadahead {
		t.Errorf("empty Set gives %+v, want defaults", got)
	}
}

// For hands out its own copy of the residency list, and NewSet its own
// copy of the rules, so no caller can change what another one sees.
func TestSetIsolation(t *testing.T) {
	rules := []Rule{{Path: "/a", Residency: []string{"r1"}}}
	s := NewSet(rules)
	rules[0] = Rule{Path: "/a", Residency: []string{"changed"}}
	e := s.For("/a/x")
	e.Residency[0] = "r2"
	if got := s.For("/a/x").Residency; !reflect.DeepEqual(got, []string{"r1"}) {
		t.Errorf("residency = %v after callers changed their copies, want [r1]", got)
	}
}

func TestMayEnter(t *testing.T) {
	tests := []struct {
		residency []string
		region    string
		want      bool
	}{
		{nil, "gpu-wlcb", true},
		{[]string{}, "gpu-wlcb", true},
		{[]string{"idc-bj"}, "idc-bj", true},
		{[]string{"idc-bj"}, "gpu-wlcb", false},
		{[]string{"idc-bj", "gpu-wlcb"}, "gpu-wlcb", true},
		{[]string{"idc-bj"}, "", false},
		{[]string{"idc-bj"}, "idc-bj2", false},
	}
	for _, tc := range tests {
		if got := (Effective{Residency: tc.residency}).MayEnter(tc.region); got != tc.want {
			t.Errorf("Residency %v: MayEnter(%q) = %v, want %v", tc.residency, tc.region, got, tc.want)
		}
	}
}

func TestRuleMatches(t *testing.T) {
	tests := []struct {
		rule, path string
		want       bool
	}{
		{"/a", "/a", true},
		{"/a", "/a/b", true},
		{"/a", "/ab", false},
		{"/a/b", "/a", false},
		{"/", "/anything", true},
		{"/", "/", true},
		{"/", "", false},
		{"/a", "", false},
	}
	for _, tc := range tests {
		if got := (Rule{Path: tc.rule}).Matches(tc.path); got != tc.want {
			t.Errorf("Rule %q Matches(%q) = %v, want %v", tc.rule, tc.path, got, tc.want)
		}
	}
}
