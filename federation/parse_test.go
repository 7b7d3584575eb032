package federation

import (
	"errors"
	"strings"
	"testing"
)

// head declares the mesh and three regions on lines 1-5, so the section
// a case adds starts on line 6.
const head = `mesh: demo
regions:
  - name: idc-bj
  - name: aws-use1
  - name: gpu-wlcb
`

// mountsAB mounts two lakes on lines 6-12, for policy cases from line 13.
const mountsAB = head + `mounts:
  - path: /lake/hdfs-bj
    ufs: hdfs://namenode:8020/warehouse
    region: idc-bj
  - path: /lake/s3-use1
    ufs: s3://training-data/
    region: aws-use1
`

// parseErrorCases are files with problems and the exact error lines
// Parse must report for them, in order. The fuzz target seeds from them.
var parseErrorCases = []struct {
	name string
	yaml string
	want []string
}{
	// The file as a whole.
	{"empty file", ``, []string{
		`t.yaml:1: the file is empty; declare at least mesh and regions, as in the repository's topology.yaml`}},
	{"only comments", "# nothing yet\n", []string{
		`t.yaml:1: the file is empty; declare at least mesh and regions, as in the repository's topology.yaml`}},
	{"unclosed flow list", "mesh: demo\nregions: [\n", []string{
		`t.yaml:2: invalid YAML: did not find expected node content`,
	}},
	{"mapping value in plain scalar", "mesh: demo\nregions:\n  - name: a: b\n", []string{
		`t.yaml:3: invalid YAML: mapping values are not allowed in this context`,
	}},
	{"two documents", head + "---\nmesh: other\n", []string{
		`t.yaml:6: a second YAML document starts here; keep the whole topology in one document`,
	}},
	{"top level is a list", "- mesh: demo\n", []string{
		`t.yaml:1: expected a mapping, got a list; start the file with "mesh: <name>" followed by regions, lines, mounts and policies`,
	}},
	{"top level is a scalar", "demo\n", []string{
		`t.yaml:1: expected a mapping, got the value "demo"; start the file with "mesh: <name>" followed by regions, lines, mounts and policies`,
	}},
	{"unknown top-level key", head + "colour: red\n", []string{
		`t.yaml:6: colour: unknown key; known keys are mesh, regions, lines, mounts, policies`,
	}},
	{"mesh and regions missing", "lines: []\n", []string{
		`t.yaml:1: mesh: required key is missing; name the mesh, e.g. "mesh: demo"`,
		`t.yaml:1: regions: required key is missing; declare at least one region, e.g. "regions: [{name: idc-bj}]"`,
	}},
	{"mesh empty", "mesh:\nregions:\n  - name: a\n", []string{
		`t.yaml:1: mesh: is empty; name the mesh, e.g. "mesh: demo"`,
	}},
	{"mesh invalid", "mesh: Demo_1\nregions:\n  - name: a\n", []string{
		`t.yaml:1: mesh: invalid mesh name "Demo_1"; use lower-case letters, digits and '-', starting with a letter or digit`,
	}},
	{"duplicate top-level key", head + "mesh: again\n", []string{
		`t.yaml:6: mesh: duplicate key (first at line 1); write each key once`,
	}},
	{"alias", "mesh: demo\nregions:\n  - &r {name: a}\n  - *r\n", []string{
		`t.yaml:4: regions[1]: YAML aliases (*name) are not supported; write the value out in full`,
	}},
	{"key is a list", head + "[a, b]: c\n", []string{
		`t.yaml:6: a key is a list; keys are single words, known keys are mesh, regions, lines, mounts, policies`,
	}},

	// regions
	{"regions is a mapping", "mesh: demo\nregions:\n  name: a\n", []string{
		`t.yaml:3: regions: expected a list, got a mapping; write each region as "- name: idc-bj"`,
	}},
	{"regions empty", "mesh: demo\nregions: []\n", []string{
		`t.yaml:2: regions: no regions declared; declare at least one, e.g. "- name: idc-bj"`,
	}},
	{"region unknown key", "mesh: demo\nregions:\n  - name: a\n  - name: b\n  - name: c\n    colour: red\n", []string{
		`t.yaml:6: regions[2].colour: unknown key; known keys are name`,
	}},
	{"region without name", "mesh: demo\nregions:\n  - {}\n", []string{
		`t.yaml:3: regions[0].name: required key is missing; name the region, e.g. "- name: idc-bj"`,
	}},
	{"region is a scalar", "mesh: demo\nregions:\n  - idc-bj\n", []string{
		`t.yaml:3: regions[0]: expected a mapping, got the value "idc-bj"; write each region as "- name: idc-bj"`,
	}},
	{"region name is a list", "mesh: demo\nregions:\n  - name: [a]\n", []string{
		`t.yaml:3: regions[0].name: expected a single value, got a list; name the region, e.g. "- name: idc-bj"`,
	}},
	{"duplicate region", head + "  - name: aws-use1\n", []string{
		`t.yaml:6: regions[3].name: duplicate region "aws-use1" (first at line 4); region names must be unique`,
	}},
	{"invalid region names", "mesh: demo\nregions:\n  - name: IDC_BJ\n  - name: -a\n  - name: \"a b\"\n", []string{
		`t.yaml:3: regions[0].name: invalid region name "IDC_BJ"; use lower-case letters, digits and '-', starting with a letter or digit`,
		`t.yaml:4: regions[1].name: invalid region name "-a"; use lower-case letters, digits and '-', starting with a letter or digit`,
		`t.yaml:5: regions[2].name: invalid region name "a b"; use lower-case letters, digits and '-', starting with a letter or digit`,
	}},

	// lines
	{"line unknown region", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n  - between: [aws-usw2, gpu-wlcb]\n    capacity: 2Gbps\n    budget: 1Gbps\n", []string{
		`t.yaml:10: lines[1].between[0]: unknown region "aws-usw2"; declared regions are idc-bj, aws-use1, gpu-wlcb`,
	}},
	{"line with three regions", head + "lines:\n  - between: [idc-bj, gpu-wlcb, aws-use1]\n    capacity: 10Gbps\n    budget: 6Gbps\n", []string{
		`t.yaml:7: lines[0].between: expected 2 regions, got 3; a line joins two regions, e.g. between: [idc-bj, gpu-wlcb]`,
	}},
	{"line to itself", head + "lines:\n  - between: [idc-bj, idc-bj]\n    capacity: 10Gbps\n    budget: 6Gbps\n", []string{
		`t.yaml:7: lines[0].between: joins region "idc-bj" to itself; a line joins two different regions`,
	}},
	{"duplicate line reversed", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n  - between: [gpu-wlcb, idc-bj]\n    capacity: 10Gbps\n    budget: 6Gbps\n", []string{
		`t.yaml:10: lines[1].between: duplicate line between gpu-wlcb and idc-bj (first at line 7); declare each pair of regions once`,
	}},
	{"line missing keys", head + "lines:\n  - rtt: 20ms\n", []string{
		`t.yaml:7: lines[0].between: required key is missing; name the two regions the line joins, e.g. between: [idc-bj, gpu-wlcb]`,
		`t.yaml:7: lines[0].capacity: required key is missing; give the line's capacity, e.g. capacity: 10Gbps`,
		`t.yaml:7: lines[0].budget: required key is missing; give the share of the capacity lakemesh may use, e.g. budget: 6Gbps`,
	}},
	{"line unknown key", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n    latency: 20ms\n", []string{
		`t.yaml:10: lines[0].latency: unknown key; known keys are between, capacity, budget, rtt, cost_per_gb`,
	}},
	{"bare number capacity", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10\n    budget: 6Gbps\n", []string{
		`t.yaml:8: lines[0].capacity: bandwidth "10" has no unit; write 10Gbps (bits per second) or 10GB/s (bytes per second)`,
	}},
	{"unit case", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10gbps\n    budget: 6GBps\n", []string{
		`t.yaml:8: lines[0].capacity: bandwidth "10gbps" has unknown unit "gbps" (b is a bit, B a byte); did you mean 10Gbps?`,
		`t.yaml:9: lines[0].budget: bandwidth "6GBps" has unknown unit "GBps" (b is a bit, B a byte); did you mean 6Gbps?`,
	}},
	{"size as rate", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 1GB\n    budget: 1Gbps\n", []string{
		`t.yaml:8: lines[0].capacity: bandwidth "1GB" has unit "GB", a size, not a rate; write 1GB/s`,
	}},
	{"unknown unit", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbit\n    budget: 1Gbps\n", []string{
		`t.yaml:8: lines[0].capacity: bandwidth "10Gbit" has unknown unit "Gbit"; units are bps, Kbps, Mbps, Gbps, Tbps (bits per second) and B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s (bytes per second)`,
	}},
	{"budget above capacity", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 12Gbps\n", []string{
		`t.yaml:9: lines[0].budget: 12Gbps is above the line's capacity 10Gbps; the budget may be at most the capacity`,
	}},
	{"budget above capacity in other units", head + "lines:\n  - between: [aws-use1, gpu-wlcb]\n    capacity: 2Gbps\n    budget: 500MB/s\n", []string{
		`t.yaml:9: lines[0].budget: 500MB/s (4Gbps) is above the line's capacity 2Gbps; the budget may be at most the capacity`,
	}},
	{"zero capacity and budget", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 0Gbps\n    budget: 0MB/s\n", []string{
		`t.yaml:8: lines[0].capacity: 0Gbps is not above zero; give the line's capacity, e.g. 10Gbps`,
		`t.yaml:9: lines[0].budget: 0MB/s is not above zero; give the share of the capacity lakemesh may use, e.g. 6Gbps`,
	}},
	{"sub-byte rate", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 1bps\n    budget: 1bps\n", []string{
		`t.yaml:8: lines[0].capacity: bandwidth "1bps" is not a whole number of bytes per second; use a multiple of 8bps`,
		`t.yaml:9: lines[0].budget: bandwidth "1bps" is not a whole number of bytes per second; use a multiple of 8bps`,
	}},
	{"negative budget", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 1Gbps\n    budget: -1Gbps\n", []string{
		`t.yaml:9: lines[0].budget: bandwidth "-1Gbps" is negative; write a rate such as 10Gbps, 500Mbps or 1GiB/s`,
	}},
	{"bad rtt", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n    rtt: 20\n  - between: [aws-use1, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n    rtt: -5ms\n", []string{
		`t.yaml:10: lines[0].rtt: "20" is not a duration; write the round-trip time as a duration, e.g. 20ms`,
		`t.yaml:14: lines[1].rtt: -5ms is negative; write the round-trip time as a duration, e.g. 20ms`,
	}},
	{"bad cost", head + "lines:\n  - between: [idc-bj, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n    cost_per_gb: -0.5\n  - between: [aws-use1, gpu-wlcb]\n    capacity: 10Gbps\n    budget: 6Gbps\n    cost_per_gb: cheap\n  - between: [aws-use1, idc-bj]\n    capacity: 10Gbps\n    budget: 6Gbps\n    cost_per_gb: .inf\n", []string{
		`t.yaml:10: lines[0].cost_per_gb: -0.5 is negative; write the cost of 10^9 bytes crossing the line, e.g. 0.01`,
		`t.yaml:14: lines[1].cost_per_gb: "cheap" is not a number; write the cost of 10^9 bytes crossing the line, e.g. 0.01`,
		`t.yaml:18: lines[2].cost_per_gb: ".inf" is not a number; write the cost of 10^9 bytes crossing the line, e.g. 0.01`,
	}},
	{"lines is a mapping", head + "lines:\n  between: [idc-bj, gpu-wlcb]\n", []string{
		`t.yaml:7: lines: expected a list, got a mapping; write each line as "- between: [idc-bj, gpu-wlcb]" with capacity and budget`,
	}},
	{"lines before regions", "lines:\n  - between: [idc-bj, nowhere]\n    capacity: 10Gbps\n    budget: 6Gbps\n" + head, []string{
		`t.yaml:2: lines[0].between[1]: unknown region "nowhere"; declared regions are idc-bj, aws-use1, gpu-wlcb`,
	}},

	// mounts
	{"nested mount", head + "mounts:\n  - path: /lake/a\n    ufs: file:///a\n    region: idc-bj\n  - path: /lake/a/b\n    ufs: file:///b\n    region: idc-bj\n", []string{
		`t.yaml:10: mounts[1].path: "/lake/a/b" overlaps mount "/lake/a" (line 7); mount paths must not nest`,
	}},
	{"parent mount after child", head + "mounts:\n  - path: /lake/a/b\n    ufs: file:///b\n    region: idc-bj\n  - path: /lake/a\n    ufs: file:///a\n    region: idc-bj\n", []string{
		`t.yaml:10: mounts[1].path: "/lake/a" overlaps mount "/lake/a/b" (line 7); mount paths must not nest`,
	}},
	{"equal mounts", head + "mounts:\n  - path: /lake/a\n    ufs: file:///a\n    region: idc-bj\n  - path: /lake/a\n    ufs: file:///b\n    region: idc-bj\n", []string{
		`t.yaml:10: mounts[1].path: "/lake/a" duplicates mount "/lake/a" (line 7); mount paths must be unique`,
	}},
	{"sibling prefix is no overlap", head + "mounts:\n  - path: /lake/a\n    ufs: file:///a\n    region: idc-bj\n  - path: /lake/ab\n    ufs: file:///b\n    region: idc-bj\n  - path: /lake/ab\n    ufs: file:///c\n    region: idc-bj\n", []string{
		`t.yaml:13: mounts[2].path: "/lake/ab" duplicates mount "/lake/ab" (line 10); mount paths must be unique`,
	}},
	{"mount paths not clean", head + "mounts:\n  - path: lake/a\n    ufs: file:///a\n    region: idc-bj\n  - path: /lake/b/\n    ufs: file:///b\n    region: idc-bj\n  - path: /lake//c\n    ufs: file:///c\n    region: idc-bj\n  - path: /lake/./d/../e\n    ufs: file:///d\n    region: idc-bj\n  - path: /\n    ufs: file:///e\n    region: idc-bj\n", []string{
		`t.yaml:7: mounts[0].path: "lake/a" is not absolute; write "/lake/a"`,
		`t.yaml:10: mounts[1].path: "/lake/b/" is not clean; write "/lake/b"`,
		`t.yaml:13: mounts[2].path: "/lake//c" is not clean; write "/lake/c"`,
		`t.yaml:16: mounts[3].path: "/lake/./d/../e" is not clean; write "/lake/e"`,
		`t.yaml:19: mounts[4].path: "/" is the whole namespace; mount the lake below it, e.g. /lake/name`,
	}},
	{"mount missing keys", head + "mounts:\n  - read_only: true\n", []string{
		`t.yaml:7: mounts[0].path: required key is missing; give the path the lake appears at, e.g. path: /lake/name`,
		`t.yaml:7: mounts[0].ufs: required key is missing; give the lake's root URI, e.g. ufs: s3://bucket/prefix`,
		`t.yaml:7: mounts[0].region: required key is missing; name the lake's home region, e.g. region: idc-bj`,
	}},
	{"bad ufs", head + "mounts:\n  - path: /lake/a\n    ufs: namenode:8020/warehouse\n    region: idc-bj\n  - path: /lake/b\n    ufs: s3://\n    region: idc-bj\n  - path: /lake/c\n    ufs: 3s://bucket\n    region: idc-bj\n  - path: /lake/d\n    ufs: s3://AKIA:hunter2@bucket/x\n    region: idc-bj\n  - path: /lake/e\n    ufs: \"s3://bucket/\\x7f\"\n    region: idc-bj\n", []string{
		`t.yaml:8: mounts[0].ufs: "namenode:8020/warehouse" is not a URI; write scheme://location, e.g. s3://bucket/prefix, hdfs://namenode:8020/path or file:///data`,
		`t.yaml:11: mounts[1].ufs: "s3://" has nothing after "s3://"; write scheme://location, e.g. s3://bucket/prefix, hdfs://namenode:8020/path or file:///data`,
		`t.yaml:14: mounts[2].ufs: "3s://bucket" is not a URI; write scheme://location, e.g. s3://bucket/prefix, hdfs://namenode:8020/path or file:///data`,
		`t.yaml:17: mounts[3].ufs: "s3://AKIA:xxxxx@bucket/x" holds a password; secrets never go in the topology file, use the environment or the lake's standard credential files`,
		`t.yaml:20: mounts[4].ufs: "s3://bucket/\x7f" is not a valid URI (net/url: invalid control character in URL); write scheme://location, e.g. s3://bucket/prefix, hdfs://namenode:8020/path or file:///data`,
	}},
	{"mount unknown region", head + "mounts:\n  - path: /lake/a\n    ufs: file:///a\n    region: aws-usw2\n", []string{
		`t.yaml:9: mounts[0].region: unknown region "aws-usw2"; declared regions are idc-bj, aws-use1, gpu-wlcb`,
	}},
	{"bad metadata_ttl and read_only", head + "mounts:\n  - path: /lake/a\n    ufs: file:///a\n    region: idc-bj\n    metadata_ttl: 0s\n    read_only: yes\n  - path: /lake/b\n    ufs: file:///b\n    region: idc-bj\n    metadata_ttl: soon\n    read_only: [true]\n", []string{
		`t.yaml:10: mounts[0].metadata_ttl: 0s is not above zero; write how long listings may be cached, e.g. 30s`,
		`t.yaml:11: mounts[0].read_only: "yes" is not a boolean; write true or false`,
		`t.yaml:15: mounts[1].metadata_ttl: "soon" is not a duration; write how long listings may be cached, e.g. 30s`,
		`t.yaml:16: mounts[1].read_only: expected a single value, got a list; write true or false`,
	}},

	// policies
	{"policy outside every mount", mountsAB + "policies:\n  - path: /lake/other/x\n    pin: true\n  - path: /lake/s3-use1x/a\n    pin: true\n", []string{
		`t.yaml:14: policies[0].path: "/lake/other/x" is not under any mount; mounted paths are "/lake/hdfs-bj", "/lake/s3-use1"`,
		`t.yaml:16: policies[1].path: "/lake/s3-use1x/a" is not under any mount; mounted paths are "/lake/hdfs-bj", "/lake/s3-use1"`,
	}},
	{"policy with no mounts", head + "policies:\n  - path: /lake/x\n    pin: true\n", []string{
		`t.yaml:7: policies[0].path: "/lake/x" is not under any mount; declare a mount for it under mounts`,
	}},
	{"policy path not clean", mountsAB + "policies:\n  - path: /lake/s3-use1/a/\n    pin: true\n  - path: lake/s3-use1\n    pin: true\n", []string{
		`t.yaml:14: policies[0].path: "/lake/s3-use1/a/" is not clean; write "/lake/s3-use1/a"`,
		`t.yaml:16: policies[1].path: "lake/s3-use1" is not absolute; write "/lake/s3-use1"`,
	}},
	{"policy under a mount with a bad path", head + "mounts:\n  - path: /lake/a/\n    ufs: file:///a\n    region: idc-bj\npolicies:\n  - path: /lake/a/x\n    pin: true\n", []string{
		`t.yaml:7: mounts[0].path: "/lake/a/" is not clean; write "/lake/a"`,
	}},
	{"residency problems", mountsAB + "policies:\n  - path: /lake/hdfs-bj/a\n    residency: [idc-bj, aws-usw2]\n  - path: /lake/hdfs-bj/b\n    residency: []\n  - path: /lake/hdfs-bj/c\n    residency: [idc-bj, idc-bj]\n  - path: /lake/hdfs-bj/d\n    residency: [gpu-wlcb]\n  - path: /lake/hdfs-bj/e\n    residency: idc-bj\n", []string{
		`t.yaml:15: policies[0].residency[1]: unknown region "aws-usw2"; declared regions are idc-bj, aws-use1, gpu-wlcb`,
		`t.yaml:17: policies[1].residency: is empty; list the regions these bytes may be in, e.g. residency: [idc-bj], or remove the key`,
		`t.yaml:19: policies[2].residency[1]: region "idc-bj" is listed twice; list each region once`,
		`t.yaml:21: policies[3].residency: leaves out idc-bj, the home region of mount "/lake/hdfs-bj" (line 7); list it too, or the bytes could never be read`,
		`t.yaml:23: policies[4].residency: expected a list, got the value "idc-bj"; list the regions these bytes may be in, e.g. residency: [idc-bj]`,
	}},
	{"bad policy values", mountsAB + "policies:\n  - path: /lake/s3-use1/a\n    ttl: 0s\n    write_mode: around\n    readahead: 64mb\n    pin: 1\n    no_cache: \"true\"\n  - path: /lake/s3-use1/b\n    ttl: -1h\n    readahead: -1\n", []string{
		`t.yaml:15: policies[0].ttl: 0s is not above zero; write how long cached pages stay, e.g. 48h`,
		`t.yaml:16: policies[0].write_mode: "around" is not a write mode; write through or back`,
		`t.yaml:17: policies[0].readahead: size "64mb" has unknown unit "mb" (b is a bit, B a byte); did you mean 64MB?`,
		`t.yaml:18: policies[0].pin: "1" is not a boolean; write true or false`,
		`t.yaml:19: policies[0].no_cache: "true" is not a boolean; write true or false`,
		`t.yaml:21: policies[1].ttl: -1h is negative; write how long cached pages stay, e.g. 48h`,
		`t.yaml:22: policies[1].readahead: size "-1" is negative; write a size such as 64MiB, 4MB or 0`,
	}},
	{"policy sets nothing", mountsAB + "policies:\n  - path: /lake/s3-use1/a\n", []string{
		`t.yaml:14: policies[0]: sets nothing; add pin, ttl, no_cache, write_mode, readahead or residency`,
	}},
	{"duplicate policy", mountsAB + "policies:\n  - path: /lake/s3-use1/a\n    pin: true\n  - path: /lake/s3-use1/a\n    ttl: 1h\n", []string{
		`t.yaml:16: policies[1].path: duplicate policy for "/lake/s3-use1/a" (first at line 14); merge the two entries`,
	}},
	{"policy unknown key", mountsAB + "policies:\n  - path: /lake/s3-use1/a\n    evict: lru\n", []string{
		`t.yaml:15: policies[0].evict: unknown key; known keys are path, pin, ttl, no_cache, write_mode, readahead, residency`,
	}},
	{"policy without path", mountsAB + "policies:\n  - pin: true\n", []string{
		`t.yaml:14: policies[0].path: required key is missing; give the subtree the policy applies to, e.g. path: /lake/name/dir`,
	}},

	// Several sections at once: every problem, in file order.
	{"many problems", "mesh: demo\nlines:\n  - between: [a, c]\n    capacity: 1Gbps\n    budget: 2Gbps\nregions:\n  - name: a\n  - name: b\n  - name: a\nmounts:\n  - path: /x/\n    ufs: file:///x\n    region: b\n", []string{
		`t.yaml:3: lines[0].between[1]: unknown region "c"; declared regions are a, b`,
		`t.yaml:5: lines[0].budget: 2Gbps is above the line's capacity 1Gbps; the budget may be at most the capacity`,
		`t.yaml:9: regions[2].name: duplicate region "a" (first at line 7); region names must be unique`,
		`t.yaml:11: mounts[0].path: "/x/" is not clean; write "/x"`,
	}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			top, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want errors:\n%s", top, strings.Join(tc.want, "\n"))
			}
			if top != nil {
				t.Errorf("Parse returned a topology with its errors")
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
			checkParseErrors(t, err)
		})
	}
}

// checkParseErrors checks that err joins *ParseErrors, each one line,
// in file order, and that errors.As finds them.
func checkParseErrors(t *testing.T, err error) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("errors.As(%v, *ParseError) = false", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T does not unwrap to a list", err)
	}
	last := 0
	for _, e := range joined.Unwrap() {
		if !errors.As(e, &pe) {
			t.Fatalf("%v is a %T, not a *ParseError", e, e)
		}
		if strings.Contains(pe.Error(), "\n") {
			t.Errorf("error is more than one line: %q", pe.Error())
		}
		if pe.Line < last {
			t.Errorf("error on line %d after line %d: not in file order", pe.Line, last)
		}
		last = pe.Line
	}
}
