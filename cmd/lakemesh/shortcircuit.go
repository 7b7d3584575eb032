package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakemesh/lakemesh/cachenode"
)

// serveShortCircuit serves the node's short-circuit socket next to its
// gRPC socket (cachenode.ShortCircuitSocket: <cache-dir>/node.fd.sock by
// default), through which clients on this host read cached pages
// themselves, from the node's memory or its page files, and stat paths
// without gRPC's framing. Clients find it by
// that name, so nothing more is advertised. Clients there also write
// journaled files into data files the node lends them
// (cachenode/lend.go). It is a shortcut: when it
// cannot be served the node runs without it, and clients read over gRPC.
func (n *runningNode) serveShortCircuit(lakes *cachenode.Lakes) {
	o := n.opts
	if o.socket == "" || !cachenode.ShortCircuitSupported {
		return
	}
	path := cachenode.ShortCircuitSocket(o.socket)
	if len(path) > maxSocketPath {
		o.log.Warn("short-circuit socket path is too long for a Unix socket; clients on this host read over gRPC", "socket", path)
		return
	}
	lis, err := listenSocket(path)
	if err != nil {
		o.log.Warn("short-circuit socket not served; clients on this host read over gRPC", "socket", path, "err", err)
		return
	}
	n.shortCircuit = cachenode.NewShortCircuitServer(cachenode.ShortCircuitConfig{
		Lakes: lakes, Store: n.store, Cache: n.cache, Writes: n.node, Logger: o.log,
		Tracer: o.tp.Tracer("github.com/lakemesh/lakemesh/cachenode"), Node: o.id,
		Stat: n.node.ShortCircuitStat,
	})
	go n.shortCircuit.Serve(lis) // Close stops it and removes the socket
	if n.registry != nil {
		sc := n.shortCircuit
		for _, c := range []struct {
			name, help string
			value      func(cachenode.ShortCircuitStats) int64
		}{
			{"lakemesh_shortcircuit_grants_total", "Page file descriptors handed to clients on this host for short-circuit reads.",
				func(s cachenode.ShortCircuitStats) int64 { return s.Grants }},
			{"lakemesh_shortcircuit_not_on_disk_total", "Short-circuit requests for pages the disk tier did not hold.",
				func(s cachenode.ShortCircuitStats) int64 { return s.NotOnDisk }},
			{"lakemesh_shortcircuit_memory_grants_total", "Memory short-circuit reads answered with where the memory tier's blocks lie, for clients on this host to copy.",
				func(s cachenode.ShortCircuitStats) int64 { return s.MemoryGrants }},
			{"lakemesh_shortcircuit_fills_total", "Memory short-circuit reads of pages the node held none of, filled for the reader first (cold pages read on this host).",
				func(s cachenode.ShortCircuitStats) int64 { return s.Fills }},
			{"lakemesh_shortcircuit_not_in_memory_total", "Memory short-circuit reads of blocks the memory tier did not hold.",
				func(s cachenode.ShortCircuitStats) int64 { return s.NotInMemory }},
			{"lakemesh_shortcircuit_stats_total", "Stats answered on the short-circuit socket to clients on this host (found or not).",
				func(s cachenode.ShortCircuitStats) int64 { return s.Stats }},
			{"lakemesh_shortcircuit_errors_total", "Short-circuit requests refused.",
				func(s cachenode.ShortCircuitStats) int64 { return s.Errors }},
			{"lakemesh_shortcircuit_lent_total", "Journal data files lent to clients on this host, which write a file's bytes into them themselves.",
				func(s cachenode.ShortCircuitStats) int64 { return s.Lent }},
			{"lakemesh_shortcircuit_lent_committed_total", "Lent journal files committed as writes.",
				func(s cachenode.ShortCircuitStats) int64 { return s.Committed }},
		} {
			n.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
				func() float64 { return float64(c.value(sc.Stats())) }))
		}
	}
	o.log.Info("short-circuit socket serving", "socket", path)
}
