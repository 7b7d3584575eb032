package test

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/router"
)

// A node process serves on <cache-dir>/node.sock and advertises it with
// this host's identity; a client of the region on this host reads through
// it (connections counted by the kernel, in /proc/net/unix). A killed
// node's socket file does not stop the next start, and a stopped node
// removes its file.
func TestNodeServesUnixSocket(t *testing.T) {
	m := newMesh(t, meshOptions{nodes: 1})
	n := m.nodes[0]
	sock := filepath.Join(n.cacheDir, "node.sock")
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatalf("node socket: %v", err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("%s: mode %v, want a socket with 0660", sock, fi.Mode())
	}
	// The short-circuit socket next to it hands out page descriptors: the
	// same trust as node.sock.
	fdSock := cachenode.ShortCircuitSocket(sock)
	if fi, err := os.Lstat(fdSock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("short-circuit socket %s: %v, %v; want a socket with 0660", fdSock, fi, err)
	}
	ms := m.membership().Members()
	if len(ms) != 1 || ms[0].Socket != sock || ms[0].Host != region.LocalHost() {
		t.Fatalf("members = %+v, want one with socket %s on host %s", ms, sock, region.LocalHost())
	}

	want := m.upload("socket/a.bin", 9<<20, 71)
	c := m.client()
	if got := readAll(t, c, "/lake/s3/socket/a.bin", 1<<20); got != want {
		t.Fatal("read through the socket returned other bytes than the lake's")
	}
	k := connectedTo(t, sock)
	if k == 0 {
		t.Fatalf("no connection on %s after a read by a client on the node's host", sock)
	}
	if got := readAll(t, c, "/lake/s3/socket/a.bin", 1<<20); got != want {
		t.Fatal("a warm read (short-circuit) returned other bytes than the lake's")
	}
	if connectedTo(t, fdSock) == 0 {
		t.Fatalf("no connection on %s after reads by a client on the node's host", fdSock)
	}
	// A client bootstrapped from the node's address (--node, as the CLI,
	// the mount and the S3 gateway are) learns the socket from the node.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	byNode, err := router.Dial(ctx, router.DialConfig{Node: n.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer byNode.Close()
	if got := readAll(t, byNode, "/lake/s3/socket/a.bin", 1<<20); got != want {
		t.Fatal("read through the socket by a --node client returned other bytes than the lake's")
	}
	if k2 := connectedTo(t, sock); k2 <= k {
		t.Fatalf("%d connections on %s before and %d after a read by a --node client: it did not use the socket", k, sock, k2)
	}

	m.stop(n, syscall.SIGKILL)
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("a killed node leaves its socket file; got %v", err)
	}
	m.start(n)
	waitFor(t, "the restarted node serves its socket again", func() bool {
		cn, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			cn.Close()
		}
		return err == nil
	})
	waitFor(t, "the restarted node serves its short-circuit socket again", func() bool {
		cn, err := net.DialTimeout("unix", fdSock, time.Second)
		if err == nil {
			cn.Close()
		}
		return err == nil
	})
	m.stop(n, syscall.SIGTERM)
	for _, p := range []string{sock, fdSock} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("a stopped node leaves %s behind: %v", p, err)
		}
	}
}

// connectedTo counts the connected Unix sockets bound at path: each
// connection a listener accepted shows its path in /proc/net/unix.
func connectedTo(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		t.Skipf("counting socket connections needs /proc/net/unix: %v", err)
	}
	defer f.Close()
	k := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path; St 03 is connected.
		fields := strings.Fields(s.Text())
		if len(fields) == 8 && fields[5] == "03" && fields[7] == path {
			k++
		}
	}
	return k
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting until %s: gave up after 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
