package testenv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// lineTarget is a server for line tests. Each connection sends an 8-byte
// big-endian count; the server sends that many bytes back while
// discarding whatever else the client sends, and reports on ended when it
// sees the client's side of a connection end.
func lineTarget(t *testing.T) (addr string, ended <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan struct{}, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var want int64
				if err := binary.Read(c, binary.BigEndian, &want); err != nil {
					return
				}
				go func() {
					io.Copy(c, io.LimitReader(zeros{}, want))
					c.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(io.Discard, c)
				ch <- struct{}{}
			}()
		}
	}()
	return l.Addr().String(), ch
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// connectLine opens a tunnel through the proxy at proxyAddr and returns the
// connection (nil unless the answer was 200) and the answer's status.
func connectLine(t *testing.T, proxyAddr, target string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatalf("dial line: %v", err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	c.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, resp.StatusCode
	}
	if br.Buffered() != 0 {
		t.Fatalf("CONNECT %s: %d bytes behind the answer", target, br.Buffered())
	}
	return c, resp.StatusCode
}

func dialLine(t *testing.T, l *LineProxy, target string) net.Conn {
	t.Helper()
	c, status := connectLine(t, l.Addr(), target)
	if status != http.StatusOK {
		t.Fatalf("CONNECT %s through line: status %d", target, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// download asks a lineTarget for n bytes through c and reads them all.
func download(c net.Conn, n int64) error {
	if err := binary.Write(c, binary.BigEndian, n); err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, c)
	if err == nil && got != n {
		err = fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return err
}

// The counters see the tunnel payload in each direction and nothing of the
// CONNECT exchange, including payload a client sends right behind its
// request without waiting for the answer.
func TestLineCountsTunnelPayload(t *testing.T) {
	l := Line(t, "b-c", 0, 0)
	target := echoServer(t)
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte("lakemesh"), 128<<10) // 1 MiB
	go func() {
		// Request and payload in one write: the proxy's reader holds both.
		c.Write(append([]byte(fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)), payload...))
		c.(*net.TCPConn).CloseWrite()
	}()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	got, err := io.ReadAll(br)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo through the line: %d bytes, %v; want %d", len(got), err, len(payload))
	}
	up, down := l.Bytes()
	if up != int64(len(payload)) || down != int64(len(payload)) {
		t.Fatalf("Bytes() = %d, %d; want %d both ways", up, down, len(payload))
	}
	var sum int64
	for _, s := range l.Samples() {
		sum += s
	}
	if sum != down {
		t.Fatalf("samples sum to %d, down is %d", sum, down)
	}
	l.Reset()
	if up, down := l.Bytes(); up != 0 || down != 0 || MaxWindow(l.Samples(), 10) != 0 {
		t.Fatalf("after Reset: %d, %d, %v", up, down, l.Samples())
	}
}

// A standard proxy client (net/http, the same CONNECT exchange gRPC's
// proxy dialer makes) works through the line.
func TestLineCarriesHTTPSClient(t *testing.T) {
	l := Line(t, "b-c", 0, 10*time.Millisecond)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("across the line"))
	}))
	defer srv.Close()
	proxyURL, _ := url.Parse(l.URL())
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(proxyURL)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(srv.URL)
	if err != nil {
		t.Fatalf("GET through line: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "across the line" {
		t.Fatalf("body %q", body)
	}
	if up, down := l.Bytes(); up == 0 || down <= int64(len(body)) {
		t.Fatalf("Bytes() = %d, %d: the TLS session was not counted", up, down)
	}
}

// Several tunnels share one capacity per direction: together they fill it
// (on average within 10%) and never exceed it by more than 3% in any one
// second; the other direction has a capacity of its own (full duplex).
func TestLineShapesToCapacity(t *testing.T) {
	const capacity = 4 << 20
	l := Line(t, "b-c", capacity, 0)
	target, ended := lineTarget(t)
	conns := make([]net.Conn, 4)
	for i := range conns {
		conns[i] = dialLine(t, l, target)
	}
	l.Reset()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns[:3] { // 12 MiB down: 3 s at capacity
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := download(c, capacity); err != nil {
				t.Errorf("download: %v", err)
			}
		}()
	}
	var upTime time.Duration
	wg.Add(1)
	go func() { // 4 MiB up meanwhile: 1 s at capacity
		defer wg.Done()
		c := conns[3]
		binary.Write(c, binary.BigEndian, int64(0))
		if _, err := io.Copy(c, io.LimitReader(zeros{}, capacity)); err != nil {
			t.Errorf("upload: %v", err)
		}
		c.(*net.TCPConn).CloseWrite()
		<-ended // the target read all of it; only this client half-closes
		upTime = time.Since(start)
	}()
	wg.Wait()
	elapsed := time.Since(start)

	up, down := l.Bytes()
	if down != 3*capacity || up != capacity+4*8 {
		t.Fatalf("Bytes() = %d, %d; want %d, %d", up, down, capacity+4*8, 3*capacity)
	}
	samples := l.Samples()
	peak := MaxWindow(samples, 10)
	avg := float64(down) / elapsed.Seconds()
	t.Logf("down: %d bytes in %s, average %.0f B/s, busiest second %d B (capacity %d); up took %s",
		down, elapsed.Round(time.Millisecond), avg, peak, capacity, upTime.Round(time.Millisecond))
	if float64(peak) > 1.03*capacity {
		t.Errorf("busiest second carried %d bytes, more than 3%% over capacity %d; samples %v", peak, capacity, samples)
	}
	if avg < 0.9*capacity {
		t.Errorf("average %.0f B/s, under 90%% of capacity %d", avg, capacity)
	}
	if upTime < 900*time.Millisecond || upTime > 2*time.Second {
		t.Errorf("4 MiB up at 4 MiB/s took %s, want about 1 s (its own bucket)", upTime)
	}
}

// The delay holds every piece rtt/2 in each direction but is pipelined:
// a transfer still runs at capacity.
func TestLineDelayIsPipelined(t *testing.T) {
	const capacity, rtt = 8 << 20, 100 * time.Millisecond
	l := Line(t, "b-c", capacity, rtt)
	c := dialLine(t, l, echoServer(t))
	start := time.Now()
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < rtt || got > rtt+time.Second {
		t.Errorf("round trip took %s, want about %s", got, rtt)
	}

	target, _ := lineTarget(t)
	d := dialLine(t, l, target)
	start = time.Now()
	if err := download(d, 4<<20); err != nil {
		t.Fatal(err)
	}
	// At capacity: 0.5 s plus the round trip. A sleep per 32 KiB piece
	// would take 128 * 50 ms = 6.4 s.
	elapsed := time.Since(start)
	t.Logf("4 MiB at 8 MiB/s with rtt %s: %s", rtt, elapsed.Round(time.Millisecond))
	if elapsed < 450*time.Millisecond+rtt || elapsed > 1500*time.Millisecond {
		t.Errorf("4 MiB at 8 MiB/s over a %s line took %s, want about 0.6 s", rtt, elapsed)
	}
}

// A test tool must not become an open proxy: only CONNECT, only to
// 127.0.0.0/8.
func TestLineRefuses(t *testing.T) {
	l := Line(t, "b-c", 0, 0)
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"192.0.2.1:80", http.StatusForbidden},
		{"example.com:443", http.StatusForbidden},
		{"[::ffff:10.0.0.1]:80", http.StatusForbidden},
		{"127.0.0.1", http.StatusBadRequest},
		{FreeAddr(t), http.StatusBadGateway}, // nothing listens there
	} {
		if c, status := connectLine(t, l.Addr(), tc.target); status != tc.want {
			if c != nil {
				c.Close()
			}
			t.Errorf("CONNECT %s: status %d, want %d", tc.target, status, tc.want)
		}
	}
	resp, err := http.Get(l.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
	// Plain HTTP through the proxy (absolute URI) is refused the same way.
	proxyURL, _ := url.Parse(l.URL())
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	resp, err = (&http.Client{Transport: tr}).Get("http://" + echoServer(t) + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("proxied GET: status %d, want 405", resp.StatusCode)
	}
}

// Cut closes every tunnel at both ends at once, even tunnels waiting for
// the line's tokens or with pieces in its delay queue, and refuses new
// ones until Restore.
func TestLineCutAndRestore(t *testing.T) {
	l := Line(t, "b-c", 256<<10, 40*time.Millisecond)
	target, ended := lineTarget(t)
	errs := make(chan error, 2)
	for range 2 {
		c := dialLine(t, l, target)
		go func() { errs <- download(c, 64<<20) }() // far more than the test lasts
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, down := l.Bytes(); down < 64<<10; _, down = l.Bytes() {
		if time.Now().After(deadline) {
			t.Fatalf("no traffic on the line: %d bytes down", down)
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	l.Cut()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Cut took %s", d)
	}
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("download finished across a cut line")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("client end of a tunnel still open 10 s after Cut")
		}
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("target end of a tunnel still open 10 s after Cut")
		}
	}
	if c, status := connectLine(t, l.Addr(), target); status != http.StatusServiceUnavailable {
		if c != nil {
			c.Close()
		}
		t.Fatalf("CONNECT on a cut line: status %d, want 503", status)
	}

	l.Restore()
	c := dialLine(t, l, target)
	if err := download(c, 1<<10); err != nil {
		t.Fatalf("download after Restore: %v", err)
	}
	// Cutting twice, restoring twice, and cutting an idle line are fine.
	l.Cut()
	l.Cut()
	l.Restore()
	l.Restore()
}

func TestMaxWindow(t *testing.T) {
	for _, tc := range []struct {
		samples []int64
		window  int
		want    int64
	}{
		{nil, 10, 0},
		{[]int64{1, 2, 3}, 0, 0},
		{[]int64{1, 2, 3}, 10, 6},
		{[]int64{5, 1, 1, 4, 4, 1}, 2, 8},
		{[]int64{5, 1, 1, 4, 4, 1}, 1, 5},
		{[]int64{5, 1, 1, 4, 4, 1}, 3, 9},
	} {
		if got := MaxWindow(tc.samples, tc.window); got != tc.want {
			t.Errorf("MaxWindow(%v, %d) = %d, want %d", tc.samples, tc.window, got, tc.want)
		}
	}
}
