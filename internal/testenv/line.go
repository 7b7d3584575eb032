package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// LineProxy stands for a dedicated line between two regions in a
// multi-region test: an HTTP CONNECT proxy that the nodes of one region
// dial the other region's nodes through (both directions of the line pass
// through the one proxy). It shapes what it carries to the line's capacity
// and adds the line's one-way delay, and it counts the payload below
// lakemesh's own code, so a test can prove a claim about bytes on a line
// ("each page crossed once", "the budget held") against what really
// crossed, and can cut the line.
//
// Shaping is one token bucket per direction shared by every tunnel, since
// the tunnels share the line. Pieces are small and the bucket holds
// capacity/50 (20 ms of traffic), so any one-second window carries about 2%
// more than the capacity at most, even right after the line was idle.
//
// The delay is a queue, not a sleep in the copy loop: a piece that was let
// onto the line is written out rtt/2 later while the next pieces are
// already being read, so the delay costs latency and no throughput, as on
// a real line with a large enough TCP window. Setting up a tunnel costs no
// added delay; only payload is delayed.
//
// Locks: LineProxy.mu, lineStats.mu and bucket.mu are never held together.
type LineProxy struct {
	name     string
	listener net.Listener
	piece    int           // largest piece let onto the line at once
	delay    time.Duration // one way, rtt/2
	queueLen int           // pieces in flight per tunnel and direction when delayed

	up, down *bucket // client->target, target->client
	stats    lineStats

	mu     sync.Mutex
	open   map[net.Conn]struct{} // every connection that Cut or Close must cut
	cut    chan struct{}         // closed while the line is down; tunnels watch it
	isCut  bool
	closed bool
	wg     sync.WaitGroup // accept loop, every connection and its pumps and writers
}

const (
	linePiece            = 32 << 10
	lineBurstDivisor     = 50 // bucket size is capacity/50: 20 ms of traffic
	lineSampleInterval   = 100 * time.Millisecond
	lineHandshakeTimeout = 10 * time.Second
	lineDialTimeout      = 5 * time.Second
	lineUnlimitedQueue   = 256 // pieces in flight when a delayed line has no capacity limit
)

var errLineCut = errors.New("line cut")

// Line starts an HTTP CONNECT proxy on 127.0.0.1:0 that stands for a line
// named name (for messages) with the given capacity in bytes per second in
// each direction (0: unlimited) and round-trip time rtt (each direction is
// delayed by rtt/2; 0: none). It is stopped when the test ends.
func Line(t testing.TB, name string, capacity int64, rtt time.Duration) *LineProxy {
	t.Helper()
	if capacity < 0 || rtt < 0 {
		t.Fatalf("line %s: capacity %d and rtt %s must not be negative", name, capacity, rtt)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("line %s: listen: %v", name, err)
	}
	l := &LineProxy{
		name:     name,
		listener: ln,
		piece:    linePiece,
		delay:    rtt / 2,
		queueLen: lineUnlimitedQueue,
		up:       newBucket(capacity),
		down:     newBucket(capacity),
		open:     map[net.Conn]struct{}{},
		cut:      make(chan struct{}),
	}
	if capacity > 0 {
		l.piece = int(min(linePiece, max(capacity/lineBurstDivisor, 1)))
		// Twice the bandwidth-delay product, so the queue never holds the
		// line back.
		bdp := float64(capacity) * l.delay.Seconds()
		l.queueLen = max(16, int(2*bdp/float64(l.piece))+4)
	}
	l.stats.reset()
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(l.close)
	return l
}

// Addr is the proxy's host:port, for a node's --line-proxy flag.
func (l *LineProxy) Addr() string { return l.listener.Addr().String() }

// URL is the proxy's address as http://host:port.
func (l *LineProxy) URL() string { return "http://" + l.Addr() }

// Bytes returns the tunnel payload that crossed the line since the last
// Reset: up from clients to targets, down from targets to clients. CONNECT
// requests and answers are not counted. A byte counts when the line lets
// it on, before the delay.
func (l *LineProxy) Bytes() (up, down int64) {
	l.stats.mu.Lock()
	defer l.stats.mu.Unlock()
	return l.stats.up, l.stats.down
}

// Reset zeroes the counters and starts a new time series; tunnels stay up.
func (l *LineProxy) Reset() { l.stats.reset() }

// Samples returns the bytes that crossed target->client in each 100 ms
// interval since Reset, up to and including the current interval (which
// is partial), so that their sum is the down count of Bytes. Idle
// intervals are zeros. MaxWindow(samples, 10) is the busiest second.
func (l *LineProxy) Samples() []int64 { return l.stats.series() }

// MaxWindow returns the largest sum of window consecutive samples (of all
// of them when there are fewer).
func MaxWindow(samples []int64, window int) int64 {
	if window <= 0 {
		return 0
	}
	var sum, best int64
	for i, s := range samples {
		sum += s
		if i >= window {
			sum -= samples[i-window]
		}
		best = max(best, sum)
	}
	return best
}

// Cut takes the line down: every tunnel is closed at both ends, and new
// CONNECT requests are answered 503 until Restore. It does not wait for
// anything.
func (l *LineProxy) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isCut || l.closed {
		return
	}
	l.isCut = true
	close(l.cut)
	for c := range l.open {
		c.Close()
	}
}

// Restore brings a cut line back up for new tunnels.
func (l *LineProxy) Restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isCut || l.closed {
		return
	}
	l.isCut = false
	l.cut = make(chan struct{})
}

// close stops accepting, cuts everything and waits for every goroutine.
func (l *LineProxy) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.listener.Close()
		if !l.isCut {
			close(l.cut)
		}
		for c := range l.open {
			c.Close()
		}
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *LineProxy) accept() {
	defer l.wg.Done()
	for {
		c, err := l.listener.Accept()
		if err != nil {
			return // closed
		}
		if _, ok := l.track(c); !ok {
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.serve(c) }()
	}
}

// serve answers one CONNECT request and carries the tunnel until both
// directions have ended.
func (l *LineProxy) serve(client net.Conn) {
	client.SetDeadline(time.Now().Add(lineHandshakeTimeout))
	br := bufio.NewReader(client)
	req, err := http.ReadRequest(br)
	if err != nil {
		l.untrack(client)
		return
	}
	if req.Method != http.MethodConnect {
		lineRefuse(client, http.StatusMethodNotAllowed, "line %s carries CONNECT tunnels only, not %s", l.name, req.Method)
		l.untrack(client)
		return
	}
	hostport := req.URL.Host
	if hostport == "" {
		hostport = req.Host
	}
	addr, status, err := loopbackTarget(hostport)
	if err != nil {
		lineRefuse(client, status, "line %s: %v", l.name, err)
		l.untrack(client)
		return
	}
	if l.isDown() {
		lineRefuse(client, http.StatusServiceUnavailable, "line %s is cut", l.name)
		l.untrack(client)
		return
	}
	target, err := net.DialTimeout("tcp", addr, lineDialTimeout)
	if err != nil {
		lineRefuse(client, http.StatusBadGateway, "line %s: %v", l.name, err)
		l.untrack(client)
		return
	}

	// Clients may send payload right behind the request; it sits in br.
	upSrc := net.Conn(&bufferedConn{Conn: client, r: br})
	upDst, downDst := target, client
	var writers []*delayedConn
	if l.delay > 0 {
		dt, dc := newDelayedConn(target, l.delay, l.queueLen), newDelayedConn(client, l.delay, l.queueLen)
		upDst, downDst, writers = dt, dc, []*delayedConn{dt, dc}
	}
	tunnel := []net.Conn{target, upDst, downDst}
	cut, ok := l.track(tunnel...)
	if !ok || cut == nil {
		lineRefuse(client, http.StatusServiceUnavailable, "line %s is cut", l.name)
		l.untrack(append(tunnel, client)...)
		return
	}
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		l.untrack(append(tunnel, client)...)
		return
	}
	client.SetDeadline(time.Time{})

	for _, w := range writers {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); w.run() }()
	}
	var both sync.WaitGroup
	both.Add(2)
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		defer both.Done()
		pump(upDst, upSrc, l.piece, l.admit(l.up, true, cut))
	}()
	go func() {
		defer l.wg.Done()
		defer both.Done()
		pump(downDst, target, l.piece, l.admit(l.down, false, cut))
	}()
	both.Wait()
	// Pieces still in the delay queue go out before the tunnel is closed.
	for _, w := range writers {
		<-w.done
	}
	l.untrack(append(tunnel, client)...)
}

// admit returns the gate one direction of one tunnel passes each piece
// through: wait for the line's tokens, then count the piece.
func (l *LineProxy) admit(b *bucket, up bool, cut <-chan struct{}) func(n int) error {
	timer := time.NewTimer(0)
	timer.Stop()
	return func(n int) error {
		if wait := b.reserve(n); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-cut:
				timer.Stop()
				return errLineCut
			}
		}
		select {
		case <-cut:
			return errLineCut
		default:
		}
		l.stats.add(up, n)
		return nil
	}
}

func (l *LineProxy) isDown() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.isCut
}

// track registers connections so Cut and Close can cut them. It returns
// the channel that closes when the line is cut (nil if it is cut now) and
// false once the proxy is closed.
func (l *LineProxy) track(conns ...net.Conn) (<-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false
	}
	for _, c := range conns {
		l.open[c] = struct{}{}
	}
	if l.isCut {
		return nil, true
	}
	return l.cut, true
}

func (l *LineProxy) untrack(conns ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(l.open, c)
	}
}

// loopbackTarget checks a CONNECT target: a test's line must never become
// an open proxy, so only 127.0.0.0/8 (or "localhost", taken as 127.0.0.1
// without asking DNS) is served.
func loopbackTarget(hostport string) (addr string, status int, err error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("CONNECT target %q: %w", hostport, err)
	}
	ip := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if host != "localhost" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return "", http.StatusForbidden, fmt.Errorf("CONNECT target %q is not a loopback address", hostport)
		}
	}
	if ip = ip.Unmap(); !ip.Is4() || !ip.IsLoopback() {
		return "", http.StatusForbidden, fmt.Errorf("CONNECT target %q is not in 127.0.0.0/8", hostport)
	}
	return net.JoinHostPort(ip.String(), port), 0, nil
}

// lineRefuse answers a CONNECT request with an error status; the caller
// closes the connection.
func lineRefuse(c net.Conn, status int, format string, args ...any) {
	body := fmt.Sprintf(format, args...) + "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// bufferedConn reads through the reader that parsed the CONNECT request,
// which may already hold the first payload bytes.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// bucket is a token bucket for one direction of a line, shared by all its
// tunnels. A reservation may drive it below zero; the reserver then waits
// until the line has paid the debt, so reservations go out in the order
// they were made and no window carries more than the burst plus the rate.
type bucket struct {
	rate  float64 // bytes per second; 0: unlimited
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(capacity int64) *bucket {
	b := &bucket{rate: float64(capacity), last: time.Now()}
	if capacity > 0 {
		b.burst = float64(max(capacity/lineBurstDivisor, 1))
		b.tokens = b.burst
	}
	return b
}

// reserve takes n bytes' worth of tokens and returns how long the caller
// must wait before sending them.
func (b *bucket) reserve(n int) time.Duration {
	if b.rate == 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// lineStats counts what crossed a line since the last reset.
type lineStats struct {
	mu       sync.Mutex
	start    time.Time
	up, down int64
	samples  []int64 // down bytes per lineSampleInterval since start
}

func (s *lineStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start, s.up, s.down, s.samples = time.Now(), 0, 0, nil
}

func (s *lineStats) add(up bool, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up {
		s.up += int64(n)
		return
	}
	s.down += int64(n)
	i := s.interval()
	for len(s.samples) <= i {
		s.samples = append(s.samples, 0)
	}
	s.samples[i] += int64(n)
}

func (s *lineStats) series() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, s.interval()+1)
	copy(out, s.samples)
	return out
}

func (s *lineStats) interval() int { return int(time.Since(s.start) / lineSampleInterval) }

// delayedConn holds what is written to a connection for the line's one-way
// delay before writing it out, in order, from its own goroutine (run), so
// that the copy loop feeding it never sleeps. The queue is bounded: a full
// queue holds the copy loop back, as a full TCP window would.
type delayedConn struct {
	net.Conn // reads and Close go straight to the connection
	delay    time.Duration
	queue    chan delayedPiece
	stop     chan struct{} // closed by Close: drop what is queued
	stopOnce sync.Once
	done     chan struct{} // closed when run returns
	err      error         // why run stopped early; set before done closes
}

type delayedPiece struct {
	b   []byte
	due time.Time
	end bool // half-close the connection
}

func newDelayedConn(c net.Conn, delay time.Duration, queue int) *delayedConn {
	return &delayedConn{Conn: c, delay: delay, queue: make(chan delayedPiece, queue),
		stop: make(chan struct{}), done: make(chan struct{})}
}

func (d *delayedConn) Write(p []byte) (int, error) {
	if err := d.enqueue(delayedPiece{b: append([]byte(nil), p...)}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes the connection once what was written before has
// gone out.
func (d *delayedConn) CloseWrite() error { return d.enqueue(delayedPiece{end: true}) }

// Close closes the connection now and drops what is queued.
func (d *delayedConn) Close() error {
	d.stopOnce.Do(func() { close(d.stop) })
	return d.Conn.Close()
}

func (d *delayedConn) enqueue(p delayedPiece) error {
	p.due = time.Now().Add(d.delay)
	select {
	case <-d.done:
		return d.stopped()
	default:
	}
	select {
	case d.queue <- p:
		return nil
	case <-d.stop:
		return net.ErrClosed
	case <-d.done:
		return d.stopped()
	}
}

func (d *delayedConn) stopped() error {
	if d.err != nil {
		return d.err
	}
	return net.ErrClosed
}

// run writes each piece out when it is due, until the half-close piece,
// Close or a write error. A write error closes the connection, so the
// tunnel's other direction, which reads from it, ends too.
func (d *delayedConn) run() {
	defer close(d.done)
	timer := time.NewTimer(0)
	timer.Stop()
	for {
		var p delayedPiece
		select {
		case p = <-d.queue:
		case <-d.stop:
			return
		}
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-d.stop:
				timer.Stop()
				return
			}
		}
		if p.end {
			if hc, ok := d.Conn.(interface{ CloseWrite() error }); ok {
				hc.CloseWrite()
			} else {
				d.Conn.Close()
			}
			return
		}
		if _, err := d.Conn.Write(p.b); err != nil {
			d.err = err
			d.Conn.Close()
			return
		}
	}
}

// Forward listens on 127.0.0.1:0 and carries every connection made to it
// over the line to target, through a CONNECT tunnel of its own, so a
// program that cannot use an HTTP proxy (a peer such as rclone reading
// S3 over plain http) crosses the same line, shaped and counted like
// lakemesh's own traffic. It returns the address to dial instead of
// target; it stops when the test ends.
func (l *LineProxy) Forward(t testing.TB, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("line %s: forward to %s: %v", l.name, target, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); l.forward(c, target) }()
		}
	}()
	return ln.Addr().String()
}

// forward opens a tunnel to target through the line and copies both ways
// until either side ends.
func (l *LineProxy) forward(c net.Conn, target string) {
	defer c.Close()
	tun, err := net.DialTimeout("tcp", l.Addr(), lineDialTimeout)
	if err != nil {
		return
	}
	defer tun.Close()
	fmt.Fprintf(tun, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(tun)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(tun, c); done <- struct{}{} }()
	go func() { io.Copy(c, br); done <- struct{}{} }()
	<-done
}
