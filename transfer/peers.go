package transfer

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Peers holds the gRPC connections of one node to the nodes of other
// regions (and of its own, for reading a page another node landed). A
// connection to a node of a region with a line proxy configured is
// tunnelled through that proxy (HTTP CONNECT), the way a site sends
// traffic for a dedicated line through the line's egress.
type Peers struct {
	proxies map[string]*url.URL // region -> line proxy; nil entries: direct

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by region + "/" + addr; bounded by the mesh's members
	down  map[string]time.Time        // line key -> until when it counts as down
}

// NewPeers returns the peer connections of a node. proxies maps a region
// name to the URL of the HTTP CONNECT proxy that stands for the line to
// it ("http://host:port"); regions not in it are dialled directly.
func NewPeers(proxies map[string]string) (*Peers, error) {
	p := &Peers{proxies: map[string]*url.URL{}, conns: map[string]*grpc.ClientConn{}, down: map[string]time.Time{}}
	for region, raw := range proxies {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "") {
			return nil, fmt.Errorf("line proxy for region %s: %q is not an http://host:port URL", region, raw)
		}
		p.proxies[region] = u
	}
	return p, nil
}

// Conn returns the connection to the node at addr of region.
func (p *Peers) Conn(region, addr string) (*grpc.ClientConn, error) {
	key := region + "/" + addr
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[key]; ok {
		return cc, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(4 << 20),
		grpc.WithInitialConnWindowSize(16 << 20),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16 << 20)),
	}
	if proxy := p.proxies[region]; proxy != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			return dialConnect(ctx, proxy.Host, target)
		}))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s in %s: %w", addr, region, err)
	}
	p.conns[key] = cc
	return cc, nil
}

// MarkDown records that the line from region from to region to failed;
// routes avoid it for d.
func (p *Peers) MarkDown(from, to string, d time.Duration) {
	p.mu.Lock()
	p.down[lineKey(from, to)] = time.Now().Add(d)
	p.mu.Unlock()
}

// MarkUp forgets a line's failure.
func (p *Peers) MarkUp(from, to string) {
	p.mu.Lock()
	delete(p.down, lineKey(from, to))
	p.mu.Unlock()
}

// Down reports whether the line between a and b failed recently.
func (p *Peers) Down(a, b string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.down[lineKey(a, b)]
	return ok && time.Now().Before(until)
}

func lineKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "|" + b
}

// Close closes every connection.
func (p *Peers) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, cc := range p.conns {
		cc.Close()
		delete(p.conns, k)
	}
	return nil
}

// dialConnect opens a TCP connection to target through the HTTP CONNECT
// proxy at proxyAddr.
func dialConnect(ctx context.Context, proxyAddr, target string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("line proxy %s: %w", proxyAddr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("line proxy %s: %w", proxyAddr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("line proxy %s: %w", proxyAddr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("line proxy %s refused the tunnel to %s: %s", proxyAddr, target, resp.Status)
	}
	conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 { // bytes of the tunnel read along with the response
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
