package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/lakemesh/lakemesh/internal/testenv"
)

// netns is a network namespace a test made, joined to this one by a veth
// pair: hostIP is this side's address, nsIP the namespace's. A client
// dialling from it reaches this host as another host would.
type netns struct {
	name, hostIP, nsIP string
}

// newNetns makes a network namespace and its veth pair, removed when the
// test ends.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "network namespaces need root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		testenv.Unavailable(t, "no ip command (iproute2): %v", err)
	}
	pid := os.Getpid()
	subnet := 20 + pid%200 // test processes running at once use other subnets
	ns := &netns{
		name:   fmt.Sprintf("lmtest%d", pid),
		hostIP: fmt.Sprintf("10.231.%d.1", subnet),
		nsIP:   fmt.Sprintf("10.231.%d.2", subnet),
	}
	veth := fmt.Sprintf("lmv%d", pid) // at most 15 bytes with its peer's "p"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns.name)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns.name).Run() })
	run("link", "add", veth, "type", "veth", "peer", "name", veth+"p")
	t.Cleanup(func() { exec.Command(ip, "link", "del", veth).Run() })
	run("link", "set", veth+"p", "netns", ns.name)
	run("addr", "add", ns.hostIP+"/30", "dev", veth)
	run("link", "set", veth, "up")
	run("-n", ns.name, "addr", "add", ns.nsIP+"/30", "dev", veth+"p")
	run("-n", ns.name, "link", "set", veth+"p", "up")
	return ns
}

// dial connects from inside the namespace. A socket stays in the
// namespace it was made in, so it is made on a thread that joined the
// namespace; that thread is never given back to the runtime (it ends
// with its goroutine).
func (ns *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		f, err := os.Open("/run/netns/" + ns.name)
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("join network namespace %s: %w", ns.name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// listenAddr is a free TCP address on ip.
func listenAddr(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// readChars is the bytes process pid read with read-like calls (rchar of
// /proc/pid/io): sendfile's bytes count, a write from a mapping's do not.
func readChars(t *testing.T, pid int) int64 {
	t.Helper()
	v, ok := procField(pid, "io", "rchar")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("no rchar in /proc/%d/io (%q)", pid, v)
	}
	return n
}

// The S3 gateway sends warm pages to a client on another host with
// sendfile, straight from the node's page files, and writes them to a
// client on its own host from the mappings it checked them in (cheaper
// for a reader on the same host). Here the other host is a network
// namespace of the test's own, joined by a veth pair: the bytes are right
// both ways, the kernel's count of what the gateway read tells the two
// apart (sendfile reads the page files; a write from a mapping reads
// nothing), and the gateway's log says which way each GET went.
func TestS3GatewaySendsToOtherHostsWithSendfile(t *testing.T) {
	ns := newNetns(t)
	m := newMesh(t, meshOptions{nodes: 1, memorySize: "0"})
	gw := startS3GatewayAt(t, m, listenAddr(t, ns.hostIP), "--log-level", "debug")
	local := gw.client(gw.secret)
	remote := gw.clientWith(gw.secret, awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DialContext = ns.dial
	}))
	const size = 16 * MiB
	const key = "remote/checkpoint.bin"
	m.upload(key, size, 31)
	want := patternAt(31, 0, size)
	get := func(c *s3.Client) []byte { t.Helper(); return getObject(t, c, "s3", key) }
	if !bytes.Equal(get(local), want) {
		t.Fatal("wrong bytes on the cold GET")
	}
	// The node writes the pages after it answered; the gateway asks for
	// a page that was not on disk again after a second (router's
	// scAskEvery).
	waitPacked(t, m.nodes[0].cacheDir, size/(4*MiB))
	time.Sleep(1100 * time.Millisecond)
	if !bytes.Equal(get(local), want) {
		t.Fatal("wrong bytes on the first warm GET")
	}

	pid := gw.proc.cmd.Process.Pid
	for _, c := range []struct {
		name     string
		client   *s3.Client
		sendfile bool
	}{{"other host", remote, true}, {"this host", local, false}} {
		before := readChars(t, pid)
		if !bytes.Equal(get(c.client), want) {
			t.Fatalf("a client on %s got wrong bytes", c.name)
		}
		read := readChars(t, pid) - before
		t.Logf("client on %s: the gateway read %d bytes for a GET of %d", c.name, read, size)
		if c.sendfile && read < size {
			t.Errorf("client on %s: the gateway read %d bytes for a GET of %d; sendfile reads them all", c.name, read, size)
		}
		if !c.sendfile && read >= size/4 {
			t.Errorf("client on %s: the gateway read %d bytes for a GET of %d; written from the mappings it reads none of them", c.name, read, size)
		}
	}
	// The gateway's debug line for each GET says how its chunks went.
	log, _ := os.ReadFile(gw.proc.logPath)
	var remoteLine, localLine string
	for _, line := range strings.Split(string(log), "\n") {
		if !strings.Contains(line, "op=GetObject") || !strings.Contains(line, "key="+key) {
			continue
		}
		if strings.Contains(line, "remote="+ns.nsIP+":") {
			remoteLine = line
		} else {
			localLine = line // the last GET from this host
		}
	}
	if !strings.Contains(remoteLine, "chunks_sendfile=") || strings.Contains(remoteLine, "chunks_sendfile=0 ") || !strings.Contains(remoteLine, "chunks_mapped=0 ") {
		t.Errorf("the GET from the other host was not sent with sendfile alone; its log line:\n%s", remoteLine)
	}
	if !strings.Contains(localLine, "chunks_sendfile=0 ") || strings.Contains(localLine, "chunks_mapped=0 ") {
		t.Errorf("the last GET from this host was not written from the mappings alone; its log line:\n%s", localLine)
	}
}
