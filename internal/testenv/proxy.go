package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CountingProxy is a TCP proxy on a loopback port that forwards every
// connection to one target and counts the bytes in each direction. It sits
// below lakemesh's own code, so a test can check claims about bytes on a
// line ("this range read moved 4 KiB, not the whole object") against what
// really crossed the wire. It does not parse what it carries.
//
// Every byte passes through pump, the copy loop it shares with LineProxy,
// which adds a bandwidth limit and latency there.
type CountingProxy struct {
	target   string
	listener net.Listener

	fromTarget direction // target -> client
	toTarget   direction // client -> target
	conns      atomic.Int64

	mu     sync.Mutex
	open   map[net.Conn]struct{} // both ends of every live pair
	closed bool
	wg     sync.WaitGroup // accept loop and every pump
}

// Proxy starts a counting proxy to target (host:port) and stops it when the
// test ends.
func Proxy(t testing.TB, target string) *CountingProxy {
	t.Helper()
	return ProxyAt(t, "127.0.0.1:0", target)
}

// ProxyAt is Proxy listening at listen: a service that becomes reachable
// at an address clients were given before (FreeAddr) while they failed
// to reach it.
func ProxyAt(t testing.TB, listen, target string) *CountingProxy {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("proxy to %s: listen: %v", target, err)
	}
	p := &CountingProxy{target: target, listener: l, open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept(t)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port; point clients here instead of the target.
func (p *CountingProxy) Addr() string { return p.listener.Addr().String() }

// BytesFromTarget is how many bytes the target sent since the last Reset.
func (p *CountingProxy) BytesFromTarget() int64 { return p.fromTarget.bytes.Load() }

// BytesToTarget is how many bytes clients sent since the last Reset.
func (p *CountingProxy) BytesToTarget() int64 { return p.toTarget.bytes.Load() }

// Conns is how many connections clients opened since the last Reset.
func (p *CountingProxy) Conns() int64 { return p.conns.Load() }

// Reset zeroes the counters; live connections stay up.
func (p *CountingProxy) Reset() {
	p.fromTarget.bytes.Store(0)
	p.toTarget.bytes.Store(0)
	p.conns.Store(0)
}

// Close stops accepting, cuts every live connection and waits for the
// proxy's goroutines to end. It is safe to call more than once.
func (p *CountingProxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.listener.Close()
		for c := range p.open {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *CountingProxy) accept(t testing.TB) {
	defer p.wg.Done()
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return // closed
		}
		target, err := net.Dial("tcp", p.target)
		if err != nil {
			// The client sees its connection closed, as it would if the
			// target refused it.
			t.Logf("proxy to %s: %v", p.target, err)
			client.Close()
			continue
		}
		if !p.track(client, target) {
			client.Close()
			target.Close()
			return
		}
		p.conns.Add(1)
		p.wg.Add(2)
		var both sync.WaitGroup
		both.Add(2)
		go func() { defer p.wg.Done(); defer both.Done(); p.toTarget.pump(target, client) }()
		go func() { defer p.wg.Done(); defer both.Done(); p.fromTarget.pump(client, target) }()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			both.Wait()
			p.untrack(client, target)
		}()
	}
}

// track registers a new pair so Close can cut it; false once closed.
func (p *CountingProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range conns {
		p.open[c] = struct{}{}
	}
	return true
}

func (p *CountingProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.open, c)
	}
}

// Hold stops passing bytes from clients to the target until Release (a
// lake that hangs): connections stay open, bytes wait in the proxy.
func (p *CountingProxy) Hold() { p.toTarget.held.Store(true) }

// Release lets held bytes through again.
func (p *CountingProxy) Release() { p.toTarget.held.Store(false) }

// direction is one way through the proxy.
type direction struct {
	bytes atomic.Int64
	held  atomic.Bool
}

func (d *direction) pump(dst, src net.Conn) {
	// 256 KiB pieces: with 32 KiB ones a reader behind the proxy got the
	// stream in small reads; cache nodes filling cold pages through it
	// spent 2.3 CPU-s per GiB, against 1.0-1.8 with 256 KiB pieces.
	pump(dst, src, 256<<10, func(n int) error {
		for d.held.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		d.bytes.Add(int64(n))
		return nil
	})
}

// pump copies src to dst in pieces of at most piece bytes until src ends,
// then half-closes dst so the far side sees the end of the stream while the
// other direction goes on. Each piece goes to admit as soon as it is read
// from src, before it is passed on: admit counts it, and may hold it (a
// line's rate limit) or refuse it (the line was cut), which ends the copy
// and closes both ends. So bytes count as having crossed the line even if
// the other side has gone by the time they would be written.
func pump(dst, src net.Conn, piece int, admit func(n int) error) {
	buf := make([]byte, piece)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if aerr := admit(n); aerr != nil {
				src.Close()
				dst.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if hc, ok := dst.(interface{ CloseWrite() error }); ok {
					hc.CloseWrite()
					return
				}
			}
			dst.Close()
			return
		}
	}
}
