package test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/cachenode"
)

// A node's /metrics tells what its page store holds and did: a cold read
// of a 64 MiB file fills 16 pages (misses; the bytes in both tiers), a
// second read of it is served from memory (memory hits), and the memory
// tier's limit and buffer counters are there.
func TestNodeMetricsShowThePageStore(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 64 * MiB
	m.upload("metrics/f.bin", size, 21)
	c := m.client()
	readInto(t, c, "/lake/s3/metrics/f.bin", 4*MiB, io.Discard)
	var cold map[string]float64
	// A fill's waiters are woken before its bytes are stored. The disk
	// tier counts each page's pack slot whole: its blocks and a header.
	waitFor(t, "the file's 16 pages stored in both tiers", func() bool {
		cold = m.scrapeNodes(t)
		return cold["lakemesh_cache_pages"] == 16 &&
			cold[`lakemesh_cache_bytes{tier="memory"}`] == size && cold[`lakemesh_cache_bytes{tier="disk"}`] == size+16*cachenode.DirectAlign
	})
	if cold["lakemesh_cache_misses_total"] == 0 {
		t.Errorf("no misses counted after a cold read")
	}
	if got, want := cold[`lakemesh_cache_limit_bytes{tier="memory"}`], float64(3*512*MiB); got != want {
		t.Errorf("memory limit %v over the 3 nodes, want %v (--memory-size 512MiB each)", got, want)
	}
	if _, ok := cold["lakemesh_memory_fresh_buffers_total"]; !ok {
		t.Errorf("lakemesh_memory_fresh_buffers_total missing")
	}
	readInto(t, c, "/lake/s3/metrics/f.bin", 4*MiB, io.Discard)
	warm := m.scrapeNodes(t)
	if hits := warm[`lakemesh_cache_hits_total{tier="memory"}`] - cold[`lakemesh_cache_hits_total{tier="memory"}`]; hits < 16 {
		t.Errorf("a warm read of 16 pages counted %v memory hits", hits)
	}
	if misses := warm["lakemesh_cache_misses_total"] - cold["lakemesh_cache_misses_total"]; misses != 0 {
		t.Errorf("a warm read counted %v misses", misses)
	}
}

// scrapeNodes reads every node's /metrics and sums each series over the
// nodes, keyed by name and labels as the text format writes them.
func (m *mesh) scrapeNodes(t *testing.T) map[string]float64 {
	t.Helper()
	sum := map[string]float64{}
	for _, n := range m.nodes {
		resp, err := http.Get("http://" + n.metricsAddr + "/metrics")
		if err != nil {
			t.Fatalf("scrape %s: %v", n.id, err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ') // label values may hold spaces
			if i < 0 {
				t.Fatalf("scrape %s: bad line %q", n.id, line)
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				t.Fatalf("scrape %s: bad line %q", n.id, line)
			}
			sum[line[:i]] += v
		}
		resp.Body.Close()
	}
	return sum
}
