// Package testenv starts the real services lakemesh's tests run against
// (Consul, MinIO, counting proxies) and decides, in one place, what happens
// when one cannot be had: the test is skipped with a message that says what
// is missing and how to get it, except when LAKEMESH_REQUIRE_SERVICES=1 (as
// in CI), where a missing service fails the test, so nothing is silently
// skipped in CI.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Unavailable skips t (or fails it when services are required) because a
// service or tool it needs cannot be had.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("LAKEMESH_REQUIRE_SERVICES") == "1" {
		t.Fatalf("required service unavailable: %s", msg)
	}
	t.Skipf("skipped: %s", msg)
}

// Binary returns the path of an external program the test needs. It looks
// in $LAKEMESH_TOOLS/bin (where .ci/run caches the consul and minio builds),
// ~/.cache/lakemesh/tools/bin, then $PATH.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if p := lookBinary(name); p != "" {
		return p
	}
	Unavailable(t, "%s binary not found in $LAKEMESH_TOOLS/bin, ~/.cache/lakemesh/tools/bin or $PATH (run .ci/deps to build it)", name)
	return ""
}

func lookBinary(name string) string {
	var dirs []string
	if d := os.Getenv("LAKEMESH_TOOLS"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, ".cache", "lakemesh", "tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process the test starts next. It is taken below the kernel's ephemeral
// port range (32768 and up by default), where the ports that outgoing
// connections get come from: a port picked with :0 is itself ephemeral,
// and a connection made before the process binds it (any test's, in any
// package running at the same time) may take it, which failed tests with
// "bind: address already in use". A port is never handed out twice by one
// test binary.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo, hi := portsBelowEphemeral()
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		if !takePorts(port, 1) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatalf("find a free port: none of 200 tries between %d and %d was free", lo, hi)
	return ""
}

// FreePortRange returns the first of n consecutive loopback ports that
// were free a moment ago, from the same range as FreeAddr and never
// handed out twice, for a process that listens on base+i.
func FreePortRange(t testing.TB, n int) int {
	t.Helper()
	lo, hi := portsBelowEphemeral()
	for range 200 {
		base := lo + rand.IntN(hi-lo-n)
		if !takePorts(base, n) {
			continue
		}
		free := true
		for p := base; p < base+n && free; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("find %d free ports in a row: none of 200 tries between %d and %d", n, lo, hi)
	return 0
}

// takePorts marks [base, base+n) handed out, unless one of them already
// was.
func takePorts(base, n int) bool {
	handedMu.Lock()
	defer handedMu.Unlock()
	for p := base; p < base+n; p++ {
		if handed[p] {
			return false
		}
	}
	for p := base; p < base+n; p++ {
		handed[p] = true
	}
	return true
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// portsBelowEphemeral is the range FreeAddr picks from: [10000, start of
// the ephemeral range), or [10000, 32768) when the kernel does not say.
func portsBelowEphemeral() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first > lo+1000 {
		hi = first
	}
	return lo, hi
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	var p int
	fmt.Sscanf(port, "%d", &p)
	return p
}
