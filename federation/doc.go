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
// # Boundaries
//
// The package is a model and pure functions over it: no goroutines, no
// I/O beyond Load reading one file, no logging. It imports policy (for the
// rules) and never imports cachenode, region, transfer or router; they
// import it. The lake URIs in mounts are checked for form only; which
// schemes exist is the business of package ufs.
package federation
