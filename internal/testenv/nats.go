package testenv

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// NATSServer is a real nats-server, embedded in the test process, standing
// for one region's NATS: JetStream in a domain of the region's own, and a
// leafnode port that other regions' servers solicit. Regions joined this
// way see each other's core NATS subjects across the leaf connection,
// while each region's JetStream stays in its own domain (reachable from the
// others as $JS.<domain>.API), as in a multi-region deployment.
//
// Leaf connections must form a tree: if two servers solicit each other, or
// remotes close a cycle, the servers detect a loop, drop the connection
// and wait 30 s before trying again. Let one region be the hub that the
// others solicit, or chain them.
type NATSServer struct {
	URL     string // nats://127.0.0.1:port, for clients
	LeafURL string // nats-leaf://127.0.0.1:port, for other regions' servers to solicit
	Name    string // the server's name, unique in the mesh
	Domain  string // the JetStream domain

	remotes    []*url.URL
	storeDir   string
	clientPort int
	leafPort   int
	log        *natsLog

	mu  sync.Mutex // serialises Restart and Shutdown
	srv *natsserver.Server
}

const (
	natsStartTimeout = 10 * time.Second
	natsLeafTimeout  = 15 * time.Second
	// natsLeafReconnect is how soon a server solicits a remote again after
	// losing it; the server's default, 1 s, would slow every Restart.
	natsLeafReconnect = 100 * time.Millisecond
	natsLogLines      = 200
)

// NATS starts an embedded nats-server for region name, with JetStream in
// domain (its store in the test's temporary directory), a client port and
// a leafnode port on 127.0.0.1, soliciting leafRemotes (LeafURLs of other
// regions' servers). It returns once the server takes connections and
// every remote is connected, and stops it when the test ends, printing the
// tail of its log if the test failed. Regions joined by leaf connections
// need distinct domains, or their JetStreams would try to merge.
func NATS(t testing.TB, name, domain string, leafRemotes ...string) *NATSServer {
	t.Helper()
	s := &NATSServer{
		Name:       name,
		Domain:     domain,
		storeDir:   t.TempDir(),
		clientPort: natsserver.RANDOM_PORT,
		leafPort:   natsserver.RANDOM_PORT,
		log:        &natsLog{},
	}
	for _, r := range leafRemotes {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatalf("nats %s: leaf remote %q: %v", name, r, err)
		}
		s.remotes = append(s.remotes, u)
	}
	t.Cleanup(func() {
		s.Shutdown()
		if t.Failed() {
			t.Logf("nats server %s (domain %s) log, last %d lines:\n%s", name, domain, natsLogLines, s.log.tail())
		}
	})
	if err := s.start(len(s.remotes)); err != nil {
		t.Fatalf("nats %s: %v\n%s", name, err, s.log.tail())
	}
	return s
}

// Restart shuts the server down and starts it again on the same ports with
// the same store, so JetStream state survives, as in a process restart. It
// returns once the server takes connections and has as many leaf
// connections as before (those it solicits and those other regions'
// servers make to it).
func (s *NATSServer) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	leafs := len(s.remotes)
	if s.srv != nil {
		leafs = max(leafs, s.srv.NumLeafNodes())
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
	if err := s.startLocked(leafs); err != nil {
		t.Fatalf("restart nats %s: %v\n%s", s.Name, err, s.log.tail())
	}
}

// Shutdown stops the server; clients see their connection drop. It is safe
// to call more than once, and Restart starts it again.
func (s *NATSServer) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

func (s *NATSServer) start(leafs int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(leafs)
}

// startLocked starts the server and waits for it to take connections and
// to have at least leafs leaf connections.
func (s *NATSServer) startLocked(leafs int) error {
	opts := &natsserver.Options{
		ServerName:         s.Name,
		Host:               "127.0.0.1",
		Port:               s.clientPort,
		NoSigs:             true,
		JetStream:          true,
		JetStreamDomain:    s.Domain,
		StoreDir:           s.storeDir,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		LeafNode: natsserver.LeafNodeOpts{
			Host:              "127.0.0.1",
			Port:              s.leafPort,
			ReconnectInterval: natsLeafReconnect,
		},
	}
	for _, u := range s.remotes {
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &natsserver.RemoteLeafOpts{URLs: []*url.URL{u}})
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		return fmt.Errorf("configure server: %w", err)
	}
	s.log.forgetLoop()
	srv.SetLoggerV2(s.log, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(natsStartTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("not ready for connections within %s", natsStartTimeout)
	}
	// Keep the ports the server picked, so a restart comes back where
	// clients and other regions look for it. ReadyForConnections has seen
	// both listeners, which the server sets after writing the ports back.
	s.clientPort = srv.Addr().(*net.TCPAddr).Port
	s.leafPort = opts.LeafNode.Port
	if s.URL == "" { // a restart keeps them; tests read them without a lock
		s.URL = "nats://127.0.0.1:" + strconv.Itoa(s.clientPort)
		s.LeafURL = "nats-leaf://127.0.0.1:" + strconv.Itoa(s.leafPort)
	}
	s.srv = srv

	deadline := time.Now().Add(natsLeafTimeout)
	for srv.NumLeafNodes() < leafs {
		if s.log.sawLoop() {
			return fmt.Errorf("leaf connections form a loop (they must form a tree; the server waits 30 s before trying again): %d of %d leaf connections up", srv.NumLeafNodes(), leafs)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d leaf connections after %s", srv.NumLeafNodes(), leafs, natsLeafTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// natsLog keeps the last lines the server logged, for a failed test's
// output; the server would otherwise log to stderr or nowhere.
type natsLog struct {
	mu    sync.Mutex
	lines []string
	loop  bool // the server reported a leafnode loop
}

func (l *natsLog) add(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := time.Now().Format("15:04:05.000") + " " + level + " " + fmt.Sprintf(format, v...)
	l.loop = l.loop || strings.Contains(line, "Loop detected")
	if len(l.lines) == natsLogLines {
		l.lines = append(l.lines[:0], l.lines[1:]...)
	}
	l.lines = append(l.lines, line)
}

func (l *natsLog) sawLoop() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loop
}

func (l *natsLog) forgetLoop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loop = false
}

func (l *natsLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *natsLog) Noticef(format string, v ...any) { l.add("INF", format, v...) }
func (l *natsLog) Warnf(format string, v ...any)   { l.add("WRN", format, v...) }
func (l *natsLog) Errorf(format string, v ...any)  { l.add("ERR", format, v...) }
func (l *natsLog) Debugf(format string, v ...any)  { l.add("DBG", format, v...) }
func (l *natsLog) Tracef(format string, v ...any)  { l.add("TRC", format, v...) }

// Fatalf records the error without exiting: the server reports a failed
// listener this way, and ReadyForConnections then fails the start.
func (l *natsLog) Fatalf(format string, v ...any) { l.add("FTL", format, v...) }
