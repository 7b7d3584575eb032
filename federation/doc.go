// Package federation is the mesh as a whole: the topology model parsed
// from topology.yaml (regions, the dedicated lines between them, the
// mounts that place each lake in the one namespace, and the policies for
// subtrees of it). It will also own the routes between regions, the
// catalog of which region holds which bytes, and the cost of a line.
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
// there is one. On the repository's topology.yaml:
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
// # Boundaries
//
// The package is a model and pure functions over it: no goroutines, no
// I/O beyond Load reading one file, no logging. It imports policy (for the
// rules) and never imports cachenode, region, transfer or router; they
// import it. The lake URIs in mounts are checked for form only; which
// schemes exist is the business of package ufs.
package federation
