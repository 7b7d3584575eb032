package ufs

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer is an HTTP server on loopback that counts the connections
// clients open to it.
func rawServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *rawHTTP, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	raw := rawHTTPFor(u)
	if raw == nil {
		t.Fatalf("no raw client for %s", srv.URL)
	}
	return srv, raw, &conns
}

func rawGet(t *testing.T, ctx context.Context, raw *rawHTTP, u string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw.Do(req)
}

var rawBytes = []byte("0123456789abcdefghijklmnopqrstuvwxyz")

// GETs one after another share one connection, read to their length
// (not to an EOF) as ReadFull does; a reply that says "Connection: close"
// does not leave its connection in the pool.
func TestRawHTTPReusesConnections(t *testing.T) {
	srv, raw, conns := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("close") != "" {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(rawBytes)))
		w.Write(rawBytes)
	})
	for i := range 20 {
		resp, err := rawGet(t, context.Background(), raw, srv.URL+"/k")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(rawBytes))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != string(rawBytes) {
			t.Fatalf("GET %d: %q, %v", i, buf, err)
		}
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 20 GETs; want 1", n)
	}
	for range 2 {
		resp, err := rawGet(t, context.Background(), raw, srv.URL+"/k?close=1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after two replies with Connection: close; want 2 (the pooled one, then one that was closed)", n)
	}

	// Closed (the lake's Close), it keeps no connection.
	resp, err := rawGet(t, context.Background(), raw, srv.URL+"/k")
	if err != nil {
		t.Fatal(err)
	}
	raw.close()
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	raw.mu.Lock()
	idle := len(raw.idle)
	raw.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle connections after close; want none", idle)
	}
}

// A pooled connection the server closed meanwhile: the GET goes again on
// a new one and succeeds.
func TestRawHTTPRetriesAConnectionTheServerClosed(t *testing.T) {
	srv, raw, conns := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(rawBytes)
	})
	for i := range 3 {
		resp, err := rawGet(t, context.Background(), raw, srv.URL+"/k")
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != string(rawBytes) {
			t.Fatalf("GET %d: %q, %v", i, b, err)
		}
		srv.CloseClientConnections()
		time.Sleep(20 * time.Millisecond) // the close reaches the client's side
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections; want 3, one a GET", n)
	}
}

// Canceling a GET's context ends a read of its body that waits on the
// server, with the context's error, and the connection is not reused.
func TestRawHTTPCancel(t *testing.T) {
	release := make(chan struct{})
	srv, raw, conns := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write(rawBytes)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := rawGet(t, ctx, raw, srv.URL+"/k")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(rawBytes))
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = resp.Body.Read(make([]byte, 100))
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("read after cancel: %v after %v; want context.Canceled at once", err, time.Since(start))
	}
	resp.Body.Close()
	raw.mu.Lock()
	idle := len(raw.idle)
	raw.mu.Unlock()
	if idle != 0 || conns.Load() != 1 {
		t.Fatalf("%d idle connections after a canceled GET; want 0", idle)
	}
}

// Only plain HTTP endpoints get the raw client: HTTPS keeps the SDK's.
func TestRawHTTPForPlainHTTPOnly(t *testing.T) {
	for _, tc := range []struct {
		u    string
		addr string
	}{{"http://127.0.0.1:9000", "127.0.0.1:9000"}, {"http://minio.local", "minio.local:80"}, {"https://s3.example.com", ""}} {
		u, _ := url.Parse(tc.u)
		raw := rawHTTPFor(u)
		if got := ""; raw != nil {
			got = raw.addr
			if got != tc.addr {
				t.Errorf("%s: dials %q; want %q", tc.u, got, tc.addr)
			}
		} else if tc.addr != "" {
			t.Errorf("%s: no raw client; want one dialing %s", tc.u, tc.addr)
		}
	}
}
