package testenv

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every connection by sending back what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func TestProxyCountsBothDirections(t *testing.T) {
	p := Proxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 512<<10/16*16) // 8 MiB
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes, sent %d", len(got), len(payload))
	}
	if p.BytesToTarget() != int64(len(payload)) || p.BytesFromTarget() != int64(len(payload)) || p.Conns() != 1 {
		t.Fatalf("counters: to %d, from %d, conns %d; want %d, %d, 1",
			p.BytesToTarget(), p.BytesFromTarget(), p.Conns(), len(payload), len(payload))
	}
	p.Reset()
	if p.BytesToTarget() != 0 || p.BytesFromTarget() != 0 || p.Conns() != 0 {
		t.Fatalf("counters after reset: %d, %d, %d", p.BytesToTarget(), p.BytesFromTarget(), p.Conns())
	}
}

func TestProxyCountsConnections(t *testing.T) {
	p := Proxy(t, echoServer(t))
	for range 3 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
		c.Close()
	}
	if p.Conns() != 3 || p.BytesToTarget() != 12 || p.BytesFromTarget() != 12 {
		t.Fatalf("conns %d, to %d, from %d; want 3, 12, 12", p.Conns(), p.BytesToTarget(), p.BytesFromTarget())
	}
}

func TestProxyCloseCutsConnections(t *testing.T) {
	p := Proxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a connection open")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a cut connection succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open after Close")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.Close()
		t.Fatal("proxy still accepts after Close")
	}
	p.Close() // twice is fine
}

func TestProxyTargetDown(t *testing.T) {
	p := Proxy(t, FreeAddr(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read through a proxy to a dead target succeeded")
	}
}
