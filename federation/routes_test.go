package federation

import (
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// triangleYAML joins a, b and c pairwise. Idle weights (see Route.Weight):
// a-b and b-c 10+10+10 = 30 each, a-c 15+10+20 = 45; so a -> c weighs 45
// and a -> b -> c 60.
const triangleYAML = `mesh: tri
regions:
  - name: a
  - name: b
  - name: c
lines:
  - between: [a, b]
    capacity: 10Gbps
    budget: 6Gbps
    rtt: 10ms
    cost_per_gb: 0.01
  - between: [b, c]
    capacity: 10Gbps
    budget: 4Gbps
    rtt: 10ms
    cost_per_gb: 0.01
  - between: [a, c]
    capacity: 2Gbps
    budget: 1Gbps
    rtt: 15ms
    cost_per_gb: 0.02
`

// meshYAML writes a topology of the space-separated regions and lines,
// each line "x y rtt cost" where "-" leaves rtt or cost_per_gb out.
func meshYAML(regions string, lines ...string) string {
	var b strings.Builder
	b.WriteString("mesh: test\nregions:\n")
	for _, r := range strings.Fields(regions) {
		fmt.Fprintf(&b, "  - name: %s\n", r)
	}
	if len(lines) > 0 {
		b.WriteString("lines:\n")
	}
	for _, l := range lines {
		f := strings.Fields(l)
		fmt.Fprintf(&b, "  - between: [%s, %s]\n    capacity: 10Gbps\n    budget: 5Gbps\n", f[0], f[1])
		if f[2] != "-" {
			fmt.Fprintf(&b, "    rtt: %s\n", f[2])
		}
		if f[3] != "-" {
			fmt.Fprintf(&b, "    cost_per_gb: %s\n", f[3])
		}
	}
	return b.String()
}

func mustParse(t *testing.T, yaml string) *Topology {
	t.Helper()
	top, err := Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%v\n%s", err, yaml)
	}
	return top
}

func repositoryTopology(t *testing.T) *Topology {
	t.Helper()
	top, err := Load(filepath.Join("..", "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// downLines says a line is down when it joins one of the given pairs,
// written "x-y" in either order.
func downLines(pairs ...string) func(Line) bool {
	return func(l Line) bool {
		for _, p := range pairs {
			if p == l.Between[0]+"-"+l.Between[1] || p == l.Between[1]+"-"+l.Between[0] {
				return true
			}
		}
		return false
	}
}

// loadOn reports load on the line from -> to, and 0 everywhere else.
func loadOn(from, to string, load float64) func(Line, string, string) float64 {
	return func(_ Line, f, t string) float64 {
		if f == from && t == to {
			return load
		}
		return 0
	}
}

func except(regions ...string) func(string) bool {
	return func(r string) bool {
		for _, x := range regions {
			if r == x {
				return false
			}
		}
		return true
	}
}

func routeStrings(routes []Route) []string {
	var out []string
	for _, r := range routes {
		out = append(out, r.String())
	}
	return out
}

type routesCase struct {
	name     string
	from, to string
	opts     RouteOptions
	want     []string // Route.String of each, in order; nil: none
}

func checkRoutes(t *testing.T, top *Topology, tests []routesCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			routes := top.Routes(tc.from, tc.to, tc.opts)
			if got := routeStrings(routes); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Routes(%s, %s) = %q, want %q", tc.from, tc.to, got, tc.want)
			}
			for _, r := range routes {
				checkRouteShape(t, top, r)
			}
		})
	}
}

// checkRouteShape checks what every Route promises: at least two
// regions, each line joining its neighbours, no region twice.
func checkRouteShape(t *testing.T, top *Topology, r Route) {
	t.Helper()
	if len(r.Regions) < 2 || len(r.Lines) != len(r.Regions)-1 {
		t.Fatalf("route %s: %d regions, %d lines", r, len(r.Regions), len(r.Lines))
	}
	seen := map[string]bool{}
	for i, name := range r.Regions {
		if seen[name] {
			t.Errorf("route %s: %s twice", r, name)
		}
		seen[name] = true
		if i > 0 {
			if l, ok := top.LineBetween(r.Regions[i-1], name); !ok || !reflect.DeepEqual(l, r.Lines[i-1]) {
				t.Errorf("route %s: Lines[%d] = %v, want the line between %s and %s", r, i-1, r.Lines[i-1], r.Regions[i-1], name)
			}
		}
	}
}

func TestRoutesTriangle(t *testing.T) {
	top := mustParse(t, triangleYAML)
	checkRoutes(t, top, []routesCase{
		{"cheapest direct route first", "a", "c", RouteOptions{}, []string{"a -> c", "a -> b -> c"}},
		{"either direction", "c", "a", RouteOptions{}, []string{"c -> a", "c -> b -> a"}},
		{"relay through b when a-c is down", "a", "c", RouteOptions{Down: downLines("a-c")}, []string{"a -> b -> c"}},
		{"relay through c when a-b is down", "a", "b", RouteOptions{Down: downLines("a-b")}, []string{"a -> c -> b"}},
		{"none when every route is down", "a", "c", RouteOptions{Down: downLines("a-c", "b-c")}, nil},
		{"none when every line is down", "a", "c", RouteOptions{Down: func(Line) bool { return true }}, nil},
		{"residency excluding b removes the relay", "a", "c", RouteOptions{Allowed: except("b")}, []string{"a -> c"}},
		{"residency excluding b and a-c down", "a", "c", RouteOptions{Allowed: except("b"), Down: downLines("a-c")}, nil},
		{"residency excluding the destination", "a", "c", RouteOptions{Allowed: except("c")}, nil},
		{"residency does not ask the source", "a", "c", RouteOptions{Allowed: except("a")}, []string{"a -> c", "a -> b -> c"}},
		{"a-c near its budget: the relay first", "a", "c", RouteOptions{Load: loadOn("a", "c", 0.99)}, []string{"a -> b -> c", "a -> c"}},
		{"a-c at half load: 90 against 60", "a", "c", RouteOptions{Load: loadOn("a", "c", 0.5)}, []string{"a -> b -> c", "a -> c"}},
		{"a-c lightly loaded: 56.25 against 60", "a", "c", RouteOptions{Load: loadOn("a", "c", 0.2)}, []string{"a -> c", "a -> b -> c"}},
		{"load is per direction: c->a full", "a", "c", RouteOptions{Load: loadOn("c", "a", 0.99)}, []string{"a -> c", "a -> b -> c"}},
		{"load near 1 and no other route", "a", "c", RouteOptions{Load: loadOn("a", "c", 1), Down: downLines("a-b")}, []string{"a -> c"}},
		{"load out of range is clamped", "a", "c", RouteOptions{Load: loadOn("a", "c", -3)}, []string{"a -> c", "a -> b -> c"}},
		{"load NaN counts as none", "a", "c", RouteOptions{Load: loadOn("a", "c", math.NaN())}, []string{"a -> c", "a -> b -> c"}},
		{"MaxHops 1: direct only", "a", "c", RouteOptions{MaxHops: 1}, []string{"a -> c"}},
		{"MaxHops 1 and a-c down", "a", "c", RouteOptions{MaxHops: 1, Down: downLines("a-c")}, nil},
		{"MaxHops 2 is every route here", "a", "c", RouteOptions{MaxHops: 2}, []string{"a -> c", "a -> b -> c"}},
		{"MaxHops above the regions", "a", "c", RouteOptions{MaxHops: 9}, []string{"a -> c", "a -> b -> c"}},
		{"same region is no route", "a", "a", RouteOptions{}, nil},
		{"unknown source", "x", "c", RouteOptions{}, nil},
		{"unknown destination", "a", "x", RouteOptions{}, nil},
	})
}

// The repository's topology.yaml: idc-bj and aws-use1 each have one line
// to gpu-wlcb and none to each other.
func TestRoutesRepositoryTopology(t *testing.T) {
	top := repositoryTopology(t)
	pii := top.PolicySet().For("/lake/hdfs-bj/pii/users.parquet").MayEnter
	open := top.PolicySet().For("/lake/hdfs-bj/train/part-0").MayEnter
	checkRoutes(t, top, []routesCase{
		{"HDFS lake to the GPUs", "idc-bj", "gpu-wlcb", RouteOptions{}, []string{"idc-bj -> gpu-wlcb"}},
		{"S3 lake to the GPUs", "aws-use1", "gpu-wlcb", RouteOptions{}, []string{"aws-use1 -> gpu-wlcb"}},
		{"S3 lake to the IDC, relayed", "aws-use1", "idc-bj", RouteOptions{}, []string{"aws-use1 -> gpu-wlcb -> idc-bj"}},
		{"GPU cache back to the IDC", "gpu-wlcb", "idc-bj", RouteOptions{}, []string{"gpu-wlcb -> idc-bj"}},
		{"PII never leaves idc-bj", "idc-bj", "gpu-wlcb", RouteOptions{Allowed: pii}, nil},
		{"other HDFS data may", "idc-bj", "gpu-wlcb", RouteOptions{Allowed: open}, []string{"idc-bj -> gpu-wlcb"}},
		{"relay region down", "idc-bj", "aws-use1", RouteOptions{Down: downLines("idc-bj-gpu-wlcb")}, nil},
		{"MaxHops 1: no relay", "aws-use1", "idc-bj", RouteOptions{MaxHops: 1}, nil},
		{"a full line is still the only route", "aws-use1", "gpu-wlcb", RouteOptions{Load: loadOn("aws-use1", "gpu-wlcb", 1)}, []string{"aws-use1 -> gpu-wlcb"}},
	})
}

// What Weight promises about rtt, cost and hops, on two routes s -> x -> d
// and s -> y -> d that differ only in their lines.
func TestRoutesWeighRTTCostAndHops(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"cheaper line with similar rtt wins",
			[]string{"s x 10ms 0.02", "x d 10ms 0.02", "s y 12ms 0", "y d 12ms -"},
			[]string{"s -> y -> d", "s -> x -> d"}},
		{"much longer rtt loses to a small cost",
			[]string{"s x 10ms 0.02", "x d 10ms 0.02", "s y 100ms -", "y d 100ms -"},
			[]string{"s -> x -> d", "s -> y -> d"}},
		{"lines without rtt or cost: fewer hops win",
			[]string{"s x - -", "x d - -", "s y - -", "y d - -", "s d - -"},
			[]string{"s -> d", "s -> x -> d", "s -> y -> d"}},
		{"a relay pays 10 a hop: 2×(1+10) < 15+10 < 2×(5+10)",
			[]string{"s x 1ms -", "x d 1ms -", "s y 5ms -", "y d 5ms -", "s d 15ms -"},
			[]string{"s -> x -> d", "s -> d", "s -> y -> d"}},
		{"three hops, reachable only through both",
			[]string{"s x 5ms -", "x y 5ms -", "y d 5ms -"},
			[]string{"s -> x -> y -> d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			top := mustParse(t, meshYAML("s x y d", tc.lines...))
			if got := routeStrings(top.Routes("s", "d", RouteOptions{})); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Routes = %q, want %q", got, tc.want)
			}
		})
	}
}

// Equal weights are ordered by region names, whatever the order of the
// regions and lines in the file.
func TestRoutesDeterministicOrder(t *testing.T) {
	lines := []string{"s x 10ms 0.01", "x d 10ms 0.01", "s y 10ms 0.01", "y d 10ms 0.01", "s w 10ms 0.01", "w d 10ms 0.01"}
	want := []string{"s -> w -> d", "s -> x -> d", "s -> y -> d"}
	for _, f := range []struct {
		name, yaml string
	}{
		{"as written", meshYAML("s x y w d", lines...)},
		{"reversed", meshYAML("d w y x s", reversed(lines)...)},
		{"ends swapped", meshYAML("s x y w d", "x s 10ms 0.01", "d x 10ms 0.01", "y s 10ms 0.01", "d y 10ms 0.01", "w s 10ms 0.01", "d w 10ms 0.01")},
	} {
		t.Run(f.name, func(t *testing.T) {
			top := mustParse(t, f.yaml)
			for range 3 {
				if got := routeStrings(top.Routes("s", "d", RouteOptions{})); !reflect.DeepEqual(got, want) {
					t.Fatalf("Routes = %q, want %q", got, want)
				}
			}
		})
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestRouteWeight(t *testing.T) {
	tri := mustParse(t, triangleYAML)
	repo := repositoryTopology(t)
	bare := mustParse(t, meshYAML("p q r", "p q - -", "q r - -"))
	route := func(top *Topology, regions ...string) Route {
		t.Helper()
		r, err := top.Route(regions...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name  string
		route Route
		opts  RouteOptions
		want  float64
	}{
		{"direct: 15ms + 10 + 1000×0.02", route(tri, "a", "c"), RouteOptions{}, 45},
		{"relay: two lines of 10 + 10 + 10", route(tri, "a", "b", "c"), RouteOptions{}, 60},
		{"half load doubles a line", route(tri, "a", "c"), RouteOptions{Load: loadOn("a", "c", 0.5)}, 90},
		{"load 0.95 reaches the cap of 20", route(tri, "a", "c"), RouteOptions{Load: loadOn("a", "c", 0.95)}, 900},
		{"load 1 stays at the cap", route(tri, "a", "c"), RouteOptions{Load: loadOn("a", "c", 1)}, 900},
		{"load above 1 stays at the cap", route(tri, "a", "c"), RouteOptions{Load: loadOn("a", "c", 7)}, 900},
		{"load on one line of a relay", route(tri, "a", "b", "c"), RouteOptions{Load: loadOn("b", "c", 0.75)}, 30 + 120},
		{"load is read in the direction of flow", route(tri, "a", "b", "c"), RouteOptions{Load: loadOn("c", "b", 0.75)}, 60},
		{"no rtt, no cost: 10 a hop", route(bare, "p", "q", "r"), RouteOptions{}, 20},
		{"topology.yaml idc-bj -> gpu-wlcb: 20 + 10 + 10", route(repo, "idc-bj", "gpu-wlcb"), RouteOptions{}, 40},
		{"topology.yaml aws-use1 -> gpu-wlcb: 70 + 10", route(repo, "aws-use1", "gpu-wlcb"), RouteOptions{}, 80},
		{"topology.yaml aws-use1 -> gpu-wlcb -> idc-bj", route(repo, "aws-use1", "gpu-wlcb", "idc-bj"), RouteOptions{}, 120},
		{"topology.yaml, idc-bj line at 0.9", route(repo, "idc-bj", "gpu-wlcb"), RouteOptions{Load: loadOn("idc-bj", "gpu-wlcb", 0.9)}, 400},
		{"zero Route", Route{}, RouteOptions{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.route.Weight(tc.opts); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("%s Weight = %v, want %v", tc.route, got, tc.want)
			}
		})
	}
}

func TestRouteMeasures(t *testing.T) {
	tri := mustParse(t, triangleYAML)
	repo := repositoryTopology(t)
	bare := mustParse(t, meshYAML("p q", "p q - -"))
	tests := []struct {
		top        *Topology
		regions    []string
		str        string
		rtt        time.Duration
		costPerGB  float64
		bottleneck Bandwidth
	}{
		{tri, []string{"a", "c"}, "a -> c", 15 * time.Millisecond, 0.02, 1e9 / 8},
		{tri, []string{"a", "b", "c"}, "a -> b -> c", 20 * time.Millisecond, 0.02, 4e9 / 8},
		{tri, []string{"c", "b", "a"}, "c -> b -> a", 20 * time.Millisecond, 0.02, 4e9 / 8},
		{repo, []string{"aws-use1", "gpu-wlcb", "idc-bj"}, "aws-use1 -> gpu-wlcb -> idc-bj", 90 * time.Millisecond, 0.01, 1e9 / 8},
		{bare, []string{"p", "q"}, "p -> q", 0, 0, 5e9 / 8},
	}
	for _, tc := range tests {
		t.Run(tc.str, func(t *testing.T) {
			r, err := tc.top.Route(tc.regions...)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.String(); got != tc.str {
				t.Errorf("String = %q, want %q", got, tc.str)
			}
			if r.From() != tc.regions[0] || r.To() != tc.regions[len(tc.regions)-1] || r.Hops() != len(tc.regions)-1 {
				t.Errorf("From, To, Hops = %s, %s, %d", r.From(), r.To(), r.Hops())
			}
			if got := r.RTT(); got != tc.rtt {
				t.Errorf("RTT = %v, want %v", got, tc.rtt)
			}
			if got := r.CostPerGB(); math.Abs(got-tc.costPerGB) > 1e-12 {
				t.Errorf("CostPerGB = %v, want %v", got, tc.costPerGB)
			}
			if got := r.Bottleneck(); got != tc.bottleneck {
				t.Errorf("Bottleneck = %v, want %v", got, tc.bottleneck)
			}
		})
	}
	var zero Route
	if zero.String() != "" || zero.From() != "" || zero.To() != "" || zero.RTT() != 0 || zero.Bottleneck() != 0 || zero.Cost(1e9) != 0 {
		t.Errorf("zero Route is not empty: %q", zero)
	}
}

// Cost(bytes) = bytes/1e9 × the sum of the lines' cost_per_gb.
func TestRouteCost(t *testing.T) {
	tri := mustParse(t, triangleYAML)
	repo := repositoryTopology(t)
	tests := []struct {
		top     *Topology
		regions []string
		bytes   int64
		want    float64
	}{
		{tri, []string{"a", "c"}, 1e9, 0.02},
		{tri, []string{"a", "b", "c"}, 2_500_000_000, 0.05},
		{tri, []string{"a", "b", "c"}, 0, 0},
		{tri, []string{"a", "b"}, 1 << 40, 0.01 * float64(1<<40) / 1e9},
		{repo, []string{"idc-bj", "gpu-wlcb"}, 300e9, 3},
		{repo, []string{"aws-use1", "gpu-wlcb"}, 300e9, 0},
		{repo, []string{"aws-use1", "gpu-wlcb", "idc-bj"}, 5e9, 0.05},
	}
	for _, tc := range tests {
		r, err := tc.top.Route(tc.regions...)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Cost(tc.bytes); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s Cost(%d) = %v, want %v", r, tc.bytes, got, tc.want)
		}
	}
}

// The relay walks a route backwards: the destination asks Next over
// LastLine, handing it Upstream, until Next is the source.
func TestRouteRelay(t *testing.T) {
	top := mustParse(t, meshYAML("s x y d", "s x 5ms -", "x y 6ms -", "y d 7ms -"))
	r, err := top.Route("s", "x", "y", "d")
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		route, next, line string
		more              bool
	}
	want := []step{
		{"s -> x -> y -> d", "y", "y-d 7ms", true},
		{"s -> x -> y", "x", "x-y 6ms", true},
		{"s -> x", "s", "s-x 5ms", false},
	}
	for i, w := range want {
		l := r.LastLine()
		got := step{r.String(), r.Next(), fmt.Sprintf("%s-%s %v", l.Between[0], l.Between[1], l.RTT), false}
		up, ok := r.Upstream()
		got.more = ok
		if got != w {
			t.Fatalf("step %d = %+v, want %+v", i, got, w)
		}
		if !ok {
			if up.Regions != nil || up.Lines != nil {
				t.Errorf("Upstream of a one-hop route = %+v, want the zero Route", up)
			}
			break
		}
		checkRouteShape(t, top, up)
		if up.To() != r.Next() || up.From() != r.From() {
			t.Errorf("Upstream %s does not run from %s to %s", up, r.From(), r.Next())
		}
		r = up
	}

	// Upstream shares no room to grow with the route it came from.
	full, _ := top.Route("s", "x", "y", "d")
	up, _ := full.Upstream()
	up.Regions = append(up.Regions, "z")
	if full.To() != "d" {
		t.Errorf("appending to Upstream changed the route to %s", full)
	}
	if (Route{}).Next() != "" || (Route{}).LastLine() != (Line{}) {
		t.Error("zero Route has a Next or LastLine")
	}
}

func TestTopologyRoute(t *testing.T) {
	top := mustParse(t, triangleYAML)
	r, err := top.Route("a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	checkRouteShape(t, top, r)
	if routes := top.Routes("a", "c", RouteOptions{}); !reflect.DeepEqual(routes[1], r) {
		t.Errorf("Route(a, b, c) = %+v, Routes gives %+v", r, routes[1])
	}
	errs := []struct {
		regions []string
		want    string
	}{
		{nil, "route : a route joins at least two regions"},
		{[]string{"a"}, "route a: a route joins at least two regions"},
		{[]string{"a", "x"}, `route a -> x: unknown region "x"`},
		{[]string{"a", "b", "a"}, `route a -> b -> a: region "a" appears twice`},
		{[]string{"a", "a"}, `route a -> a: region "a" appears twice`},
	}
	for _, tc := range errs {
		if _, err := top.Route(tc.regions...); err == nil || err.Error() != tc.want {
			t.Errorf("Route(%q) error = %v, want %q", tc.regions, err, tc.want)
		}
	}
	repo := repositoryTopology(t)
	if _, err := repo.Route("aws-use1", "idc-bj"); err == nil || err.Error() != "route aws-use1 -> idc-bj: no line between aws-use1 and idc-bj" {
		t.Errorf("Route over a missing line: %v", err)
	}
}

func TestLeafParentSpansTheLinesWithoutCycles(t *testing.T) {
	topo, err := Load("../topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{"gpu-wlcb": "", "idc-bj": "gpu-wlcb", "aws-use1": "gpu-wlcb"}
	for r, want := range cases {
		if got := LeafParent(topo, "gpu-wlcb", r); got != want {
			t.Errorf("LeafParent(gpu-wlcb, %s) = %q, want %q", r, got, want)
		}
	}
	// Rooted at a leaf of the line graph, the far region hangs off the hub.
	if got := LeafParent(topo, "aws-use1", "idc-bj"); got != "gpu-wlcb" {
		t.Errorf("LeafParent(aws-use1, idc-bj) = %q, want gpu-wlcb", got)
	}
}
