// Package federation is the mesh as a whole: the topology model parsed
// from topology.yaml (regions, the dedicated lines between them, the
// mounts that place each lake in the one namespace, and the policies for
// subtrees of it), and the routes between regions with their weight and
// cost. The regions themselves run as separate deployments; how they
// are joined is described below, because every package that moves bytes
// or messages between regions relies on it.
//
// # Parsing
//
// Parse and Load decode the file through yaml.Node, never straight into
// structs, so that every problem names the line it is on. All problems of
// a file are returned at once, each a *ParseError whose message is one
// line:
//
//	topology.yaml:14: lines[1].between[0]: unknown region "aws-usw2"; declared regions are idc-bj, aws-use1, gpu-wlcb
//
// joined with errors.Join in file order, so a user fixes the file in one
// pass. A Topology is returned only when there is no problem at all;
// nothing is ever half-parsed.
//
// # Invariants of a parsed Topology
//
//   - Region names are unique and match [a-z0-9][a-z0-9-]*.
//   - Every region named by a line, a mount or a residency is declared.
//   - A line joins two different regions; at most one line per pair, in
//     either order; 0 < Budget <= Capacity; RTT >= 0; CostPerGB >= 0.
//   - Mount paths are absolute, clean, not "/", and no mount path equals
//     or lies below another at a "/" boundary, so Resolve has at most one
//     answer and "/lake/s3-use1x" is never inside "/lake/s3-use1".
//   - Every policy path is clean and lies in a mount; a residency list
//     includes the home region of that mount.
//
// Bandwidths are bytes per second internally and written the way links
// are sold ("10Gbps") or the way disks are ("1GiB/s"); see
// ParseBandwidth. ParseSize reads byte sizes for policies and for the
// cache node's flags.
//
// # Routes
//
// A byte a region needs comes from a source region (the lake's home
// region, or a region whose cache holds it) over a Route: one or more
// lines, relayed store-and-forward, each region in between keeping a
// copy. Topology.Routes lists the simple paths between two regions,
// leaving out lines that RouteOptions.Down reports and regions the bytes
// may not enter (RouteOptions.Allowed, usually
// PolicySet().For(path).MayEnter), lowest Route.Weight first and equal
// weights by region names. The weight is in milliseconds of rtt
// equivalent:
//
//	Weight = Σ over lines i of (rtt_i + 10ms + 1000ms × cost_per_gb_i) × F(load_i)
//	F(load) = min(1/(1 - load), 20)
//
// rtt in milliseconds (0 when not given); 10ms is the relay penalty of a
// hop; 1000ms per currency unit per GB makes 0.01/GB weigh as much as
// 10ms of rtt; load_i is RouteOptions.Load for the line in the direction
// the bytes flow, clamped to [0, 1]. A line near its budget weighs up to
// twenty times its idle weight, so traffic moves to another route when
// there is one. A node's transfer.Source reports as load, for each line
// into its region, how long a new fetch would wait behind its own queue
// on the line past one second (a wait of k seconds weighs the line k
// times its idle weight), so only demand above what the line's budget
// grants spills to the next route, and the line keeps running at its
// budget. On the repository's topology.yaml:
//
//	idc-bj -> gpu-wlcb               20 + 10 + 1000×0.01   =  40
//	aws-use1 -> gpu-wlcb             70 + 10 + 0           =  80
//	aws-use1 -> gpu-wlcb -> idc-bj   80 + 40               = 120 (the only route)
//	idc-bj -> gpu-wlcb at load 0.9   40 × 10               = 400
//
// A relay walks a route backwards: the destination asks Route.Next for
// the bytes over Route.LastLine and hands it Route.Upstream; Next serves
// them from its cache or, when it is not the source, reads them over
// Upstream the same way. Topology.Route rebuilds a route from the region
// names a relay was handed.
//
// # How regions are joined
//
// Consul: one datacenter per region, WAN-federated. A node registers in
// its own region's datacenter; it reads another region's members from
// the same agent with ?dc=<region> (region.ConsulConfig.Datacenter).
// A region whose datacenter cannot be reached has no members as far as
// this node knows, which routes treat like a region that is down.
//
// NATS: one server (or cluster) per region, with its own JetStream
// domain named after the region, and the regions' servers joined by
// leaf node connections along a spanning tree of the lines (LeafParent;
// leaf node connections must not form a cycle). We chose leaf nodes over
// gateways because a gateway supercluster shares one JetStream meta
// group: a region cut off from the majority of the others would lose
// its JetStream, and with it the claims and budget grants it needs to
// keep serving. With a domain per region, everything a region needs to
// move bytes into it lives in its own JetStream: the claims that fence a
// page's crossing (transfer.Claims) and the governor of every line
// direction into it (transfer.Budget, whose leader is elected in the
// receiving region). Only mesh-wide notices ride the leaf connections
// (metadata invalidations from `lakemesh sync`); they are best effort,
// and the mounts' metadata TTL bounds staleness when a leaf link is down.
//
// gRPC carries the bytes: a node of the destination region asks the
// node that owns the page (HRW) in the region one hop toward the source.
//
// # Where a miss is served from (the catalog)
//
// A region that misses bytes of a lake homed elsewhere asks the regions
// whose route to it weighs less than the home region's (at most two, the
// cheapest first) whether they hold the bytes: one unary Has call to the
// page's owner in that region, a few hundred bytes and one rtt, which
// costs nothing on the line compared with the page. A region that holds
// it serves it over its route; otherwise the home region's nodes do, and
// when the home region has no node up, the lake is read directly over
// the line (granted and counted as if the home region had sent it). We
// ask rather than publish summaries because a region's holdings change
// with every fill and eviction, and an answer from the owner is exact at
// the moment it matters; publishing summaries would trade that rtt for
// staleness and traffic on every fill. We have not measured the two side
// by side.
//
// # Boundaries
//
// The package is a model and pure functions over it: no goroutines, no
// I/O beyond Load reading one file, no logging. It imports policy (for the
// rules) and never imports cachenode, region, transfer or router; they
// import it. The lake URIs in mounts are checked for form only; which
// schemes exist is the business of package ufs.
package federation
