package test

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/internal/testenv"
)

// Bad topology files: the CLI prints the exact error lines and exits
// non-zero, before starting anything.
func TestBadTopologyErrorLines(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{
			name: "unknown region in a line",
			yaml: "mesh: m\nregions:\n  - name: a\n  - name: b\nlines:\n  - between: [a, c]\n    capacity: 1Gbps\n    budget: 1Gbps\n",
			want: []string{`lakemesh: %s:6: lines[0].between[1]: unknown region "c"; declared regions are a, b`},
		},
		{
			name: "budget above capacity and an undeclared home region",
			yaml: "mesh: m\nregions:\n  - name: a\n  - name: b\nlines:\n  - between: [a, b]\n    capacity: 1Gbps\n    budget: 2Gbps\nmounts:\n  - path: /lake/x\n    ufs: file:///tmp/x\n    region: z\n",
			want: []string{
				`lakemesh: %s:8: lines[0].budget: 2Gbps is above the line's capacity 1Gbps; the budget may be at most the capacity`,
				`lakemesh: %s:12: mounts[0].region: unknown region "z"; declared regions are a, b`,
			},
		},
		{
			name: "unknown key",
			yaml: "mesh: m\nregions:\n  - name: a\n    colour: red\n",
			want: []string{`lakemesh: %s:4: regions[0].colour: unknown key; known keys are name`},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("bad%d.yaml", i))
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"node", "--topology", path, "--region", "a", "--consul", "127.0.0.1:1", "--cache-dir", dir},
				{"up", "--topology", path, "--workdir", filepath.Join(dir, "demo")},
			} {
				_, stderr, code := run(t, args...)
				if code == 0 {
					t.Fatalf("lakemesh %s accepted a bad topology", args[0])
				}
				var want []string
				for _, w := range tc.want {
					want = append(want, fmt.Sprintf(w, path))
				}
				if got := strings.TrimRight(stderr, "\n"); got != strings.Join(want, "\n") {
					t.Errorf("lakemesh %s printed:\n%s\nwant:\n%s", args[0], got, strings.Join(want, "\n"))
				}
			}
		})
	}
}

// The demo: `lakemesh up` runs every region in one process, and every
// client command works against it from another process.
func TestDemoAndClientCommands(t *testing.T) {
	work := t.TempDir()
	port := testenv.FreePortRange(t, 30) // up listens on port+10*region+node
	cmd := exec.Command(lakemeshBin, "up", "--topology", "../topology.yaml", "--workdir", work, "--port", fmt.Sprint(port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var upLog lockedBuffer
	cmd.Stderr = io.MultiWriter(os.Stderr, &upLog)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var out strings.Builder
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops the mesh") {
				ready <- out.String()
			}
		}
	}()
	select {
	case banner := <-ready:
		if !strings.Contains(banner, "region gpu-wlcb") || !strings.Contains(banner, "lakemesh cat --trace") {
			t.Fatalf("the demo banner does not say what to try:\n%s", banner)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("lakemesh up did not come up within 60s")
	}
	// Its nodes share one work directory: a cache on a file system that
	// discards online is warned about once, not once per node.
	warnings := 0
	if cachenode.WarnIfDiscard(slog.New(slog.DiscardHandler), work) {
		warnings = 1
	}
	if got := strings.Count(upLog.String(), "mounted with online discard"); got != warnings {
		t.Errorf("lakemesh up warned %d times about online discard; want %d:\n%s", got, warnings, upLog.String())
	}
	node := fmt.Sprintf("127.0.0.1:%d", port)
	lm := func(args ...string) string {
		t.Helper()
		out, stderr, code := run(t, append([]string{args[0], "--node", node}, args[1:]...)...)
		if code != 0 {
			t.Fatalf("lakemesh %v: exit %d: %s", args, code, stderr)
		}
		return out
	}

	if got := lm("ls", "/lake"); got != "hdfs-bj/\ns3-use1/\n" {
		t.Fatalf("ls /lake = %q", got)
	}
	// A Consul address in the environment (common on such machines) must
	// not stop --node from working.
	withConsulEnv := exec.Command(lakemeshBin, "ls", "--node", node, "/lake")
	withConsulEnv.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=127.0.0.1:1")
	if out, err := withConsulEnv.CombinedOutput(); err != nil || string(out) != "hdfs-bj/\ns3-use1/\n" {
		t.Fatalf("ls --node with CONSUL_HTTP_ADDR set: %v %q", err, out)
	}
	if got := lm("ls", "/lake/s3-use1/train"); got != "part-0000\npart-0001\npart-0002\npart-0003\n" {
		t.Fatalf("ls train = %q", got)
	}
	lake := filepath.Join(work, "lakes", "lake_s3-use1")
	want, _ := os.ReadFile(filepath.Join(lake, "train", "part-0001"))
	got := lm("cat", "/lake/s3-use1/train/part-0001")
	if sha256.Sum256([]byte(got)) != sha256.Sum256(want) {
		t.Fatal("cat returned other bytes than the lake holds")
	}
	// cat --trace explains the read from the GPU region: pages from the
	// lake's region over the line (route, bytes, budget wait, cost), then
	// from this region's memory.
	_, trace1, _ := run(t, "cat", "--node", node, "--trace", "/lake/hdfs-bj/train/part-0002")
	_, trace2, _ := run(t, "cat", "--node", node, "--trace", "/lake/hdfs-bj/train/part-0002")
	for _, want := range []string{" remote ", "node gpu-wlcb-", "from idc-bj (idc-bj-", "over idc-bj->gpu-wlcb: 4.0 MiB crossed, budget wait "} {
		if !strings.Contains(trace1, want) {
			t.Fatalf("cold trace does not show %q:\n%s", want, trace1)
		}
	}
	// 16 MiB at cost_per_gb 0.01: 0.000168.
	if !regexp.MustCompile(`lines idc-bj->gpu-wlcb: 16.0 MiB crossed, budget wait \S+, cost 0\.000168`).MatchString(trace1) {
		t.Fatalf("cold trace does not total the line's bytes and cost:\n%s", trace1)
	}
	status := lm("status")
	if !regexp.MustCompile(`idc-bj->gpu-wlcb\s+\S+ \S+/s\s+6Gbps\s+\d+%\s+16\.0 MiB\s+0\.0002`).MatchString(status) || !strings.Contains(status, "interactive") {
		t.Fatalf("status does not show the line's use against its budget:\n%s", status)
	}
	// Warm: from this region's cache, which on the nodes' own host the
	// client reads from their memory or page files itself (short-circuit);
	// nothing from the lake or over the line.
	if !regexp.MustCompile(`page 0 +(memory|disk)( \(short-circuit\))? `).MatchString(trace2) || strings.Contains(trace2, " lake ") || strings.Contains(trace2, " remote ") {
		t.Fatalf("warm trace should be served from this region's cache:\n%s", trace2)
	}
	// A page the readahead brought over the line before the reader asked
	// for it is reported, once, by the read that uses it: the first half
	// of part-0003 starts the readahead of the second, which then crosses
	// (the status shows the line at 32 MiB); the whole file's trace shows
	// the second half read ahead, and its total is that half.
	_, half, _ := run(t, "cat", "--node", node, "--trace", "--length", "8388608", "/lake/hdfs-bj/train/part-0003")
	if !regexp.MustCompile(`lines idc-bj->gpu-wlcb: 8.0 MiB crossed, budget wait \S+, cost 0\.000084`).MatchString(half) {
		t.Fatalf("trace of the first half does not total its bytes over the line:\n%s", half)
	}
	aheadDone := time.Now().Add(20 * time.Second)
	for !regexp.MustCompile(`idc-bj->gpu-wlcb\s+\S+ \S+/s\s+6Gbps\s+\d+%\s+32\.0 MiB`).MatchString(lm("status")) {
		if time.Now().After(aheadDone) {
			t.Fatalf("the readahead of part-0003's second half did not cross the line within 20s:\n%s", lm("status"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, whole, _ := run(t, "cat", "--node", node, "--trace", "/lake/hdfs-bj/train/part-0003")
	if !regexp.MustCompile(`page 3 .*\n.*└─ read ahead from idc-bj \(idc-bj-\d\) over idc-bj->gpu-wlcb: 4.0 MiB crossed`).MatchString(whole) ||
		!regexp.MustCompile(`lines idc-bj->gpu-wlcb: 8.0 MiB crossed, budget wait \S+, cost 0\.000084`).MatchString(whole) {
		t.Fatalf("trace after the readahead does not show the second half read ahead over the line, once:\n%s", whole)
	}
	stat := lm("stat", "/lake/s3-use1/train/part-0001")
	if !strings.Contains(stat, "size:     16777216") || !strings.Contains(stat, "version:") {
		t.Fatalf("stat output:\n%s", stat)
	}

	// put, then read back, list, remove.
	src := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(src, []byte("hello, mesh\n"), 0o644)
	lm("put", "--content-type", "text/plain", "--meta", "Author=ml team", src, "/lake/s3-use1/notes/hello.txt")
	if got := lm("cat", "/lake/s3-use1/notes/hello.txt"); got != "hello, mesh\n" {
		t.Fatalf("cat after put = %q", got)
	}
	if stat := lm("stat", "/lake/s3-use1/notes/hello.txt"); !strings.Contains(stat, "content-type: text/plain\n") || !strings.Contains(stat, "x-amz-meta-author: ml team\n") {
		t.Fatalf("stat after put with metadata:\n%s", stat)
	}
	if _, stderr, code := run(t, "put", "--node", node, "--meta", "novalue", src, "/lake/s3-use1/notes/x.txt"); code == 0 || !strings.Contains(stderr, `--meta "novalue": write NAME=VALUE`) {
		t.Fatalf("put with a bad --meta: exit %d, %q", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(lake, "notes", "hello.txt")); string(b) != "hello, mesh\n" {
		t.Fatalf("the lake holds %q after put", b)
	}
	if got := lm("ls", "/lake/s3-use1/notes"); !strings.Contains(got, "hello.txt") {
		t.Fatalf("ls after put does not show the file: %q", got)
	}
	lm("rm", "/lake/s3-use1/notes/hello.txt")
	if _, err := os.Stat(filepath.Join(lake, "notes", "hello.txt")); !os.IsNotExist(err) {
		t.Fatal("rm left the file in the lake")
	}
	if _, stderr, code := run(t, "stat", "--node", node, "/lake/s3-use1/notes/hello.txt"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("stat of a removed file: exit %d, %q", code, stderr)
	}

	// A file changed behind lakemesh's back: sync in the GPU region makes
	// it visible at once there, and in the other regions too (the
	// invalidation travels over the embedded NATS server).
	other := fmt.Sprintf("127.0.0.1:%d", port+10) // first node of the next region
	before, _, code := run(t, "cat", "--node", other, "/lake/s3-use1/README.txt")
	if code != 0 || !strings.Contains(before, "demo lake") {
		t.Fatalf("cat through another region: exit %d %q", code, before)
	}
	os.WriteFile(filepath.Join(lake, "README.txt"), []byte("changed\n"), 0o644)
	if out := lm("sync", "/lake/s3-use1"); !strings.Contains(out, "every other region told over NATS") {
		t.Fatalf("sync did not reach the mesh: %q", out)
	}
	if got := lm("cat", "/lake/s3-use1/README.txt"); got != "changed\n" {
		t.Fatalf("after sync cat = %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, _ := run(t, "cat", "--node", other, "/lake/s3-use1/README.txt")
		if got == "changed\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("another region still serves %q 5s after a mesh-wide sync (its metadata TTL is 30s)", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Bad input: one clear line and a non-zero exit.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cat", "--node", node, "/nowhere/x"}, `no mount holds this path`},
		{[]string{"cat", "--node", node, "lake/s3-use1/README.txt"}, `a namespace path starts with /`},
		{[]string{"cat", "--node", node, "/lake/s3-use1/../../etc/passwd"}, `".." is not allowed`},
		{[]string{"cat", "--node", node, "/lake/s3-use1/train"}, `is a directory`},
		{[]string{"sync", "--node", node, "/lake/s3-usw1"}, `path "/lake/s3-usw1": no mount holds this path`},
		{[]string{"ls", "--node", "127.0.0.1:1", "/lake"}, `127.0.0.1:1`},
	} {
		_, stderr, code := run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("lakemesh %v: exit %d, stderr %q; want one line containing %q", tc.args, code, stderr, tc.want)
		}
	}
}
