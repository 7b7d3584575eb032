package test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/router"
)

// TestMeshBenchmarks prints the foundation's figures side by side with
// direct GETs from the same MinIO, in the same run, as medians of several
// runs. It is a report, not a pass/fail test: it runs only with
// LAKEMESH_BENCH=1 (bench/run.sh sets it).
func TestMeshBenchmarks(t *testing.T) {
	if os.Getenv("LAKEMESH_BENCH") != "1" {
		t.Skip("skipped: a benchmark report; run bench/run.sh (LAKEMESH_BENCH=1)")
	}
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("LAKEMESH_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	m := newMesh(t, meshOptions{memorySize: "1GiB", directMount: true, pretouch: true})
	const size = 512 * MiB
	ctx := context.Background()
	s3c := m.minio.Client()
	var rows []benchRow

	// Sequential reads, 1 stream: direct GET vs cold (fresh object each
	// run) vs warm lakemesh. Both sides read MinIO with no proxy between:
	// the counting proxy's own copy would be charged to lakemesh alone.
	// What each process spent on it is printed too: on a machine whose
	// few cores MinIO shares, the CPU a cold read costs bounds its ratio.
	var direct1, cold1, warm1 []float64
	var directCPU, coldCPU []cpuSpent
	for r := 0; r < runs; r++ {
		key := fmt.Sprintf("bench/seq-%d.bin", r)
		m.upload(key, size, uint64(100+r))
		before := m.cpu()
		direct1 = append(direct1, mbps(size, timeIt(func() { directGet(t, s3c, key) })))
		mid := m.cpu()
		c := m.client()
		cold1 = append(cold1, mbps(size, timeIt(func() { readInto(t, c, "/lake/direct/"+key, 16*MiB, io.Discard) })))
		directCPU, coldCPU = append(directCPU, mid.minus(before)), append(coldCPU, m.cpu().minus(mid))
		warm1 = append(warm1, mbps(size, timeIt(func() { readInto(t, c, "/lake/direct/"+key, 16*MiB, io.Discard) })))
	}
	rows = append(rows,
		benchRow{"cold sequential read, 1 stream (MB/s)", median(cold1), median(direct1), ">= 0.9x"},
		benchRow{"warm sequential read, 1 stream (MB/s)", median(warm1), median(direct1), ">= 1.5x"},
	)
	gib := float64(size) / (1 << 30)
	coldCost := medianCPU(coldCPU).per(gib)
	directCost := medianCPU(directCPU).per(gib)

	// 8 streams over 8 warm files of size/8 each.
	const streams = 8
	var keys []string
	for i := 0; i < streams; i++ {
		k := fmt.Sprintf("bench/par-%d.bin", i)
		m.upload(k, size/streams, uint64(200+i))
		keys = append(keys, k)
	}
	c := m.client()
	parallel := func(fn func(k string)) time.Duration {
		return timeIt(func() {
			var wg sync.WaitGroup
			for _, k := range keys {
				wg.Add(1)
				go func() { defer wg.Done(); fn(k) }()
			}
			wg.Wait()
		})
	}
	parallel(func(k string) { readInto(t, c, "/lake/s3/"+k, 16*MiB, io.Discard) }) // warm up the cache
	var direct8, warm8 []float64
	for r := 0; r < runs; r++ {
		direct8 = append(direct8, mbps(size, parallel(func(k string) { directGet(t, s3c, k) })))
		warm8 = append(warm8, mbps(size, parallel(func(k string) { readInto(t, c, "/lake/s3/"+k, 16*MiB, io.Discard) })))
	}
	rows = append(rows, benchRow{"warm sequential read, 8 streams (MB/s)", median(warm8), median(direct8), ">= 1.5x"})
	rssStreams := nodeRSS(m)

	// Warm random 4 KiB reads per second, 4 goroutines, 5 s each.
	key := "bench/seq-0.bin"
	f, err := c.Open(ctx, "/lake/direct/"+key) // warm: read above
	if err != nil {
		t.Fatal(err)
	}
	var directRand, warmRand []float64
	for r := 0; r < runs; r++ {
		directRand = append(directRand, opsPerSec(4, 3*time.Second, func(rng *rand.Rand) {
			off := rng.Int64N(size - 4096)
			out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+4095))})
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, out.Body)
			out.Body.Close()
		}))
		warmRand = append(warmRand, opsPerSec(4, 3*time.Second, func(rng *rand.Rand) {
			buf := make([]byte, 4096)
			if _, err := f.ReadAt(ctx, buf, rng.Int64N(size-4096)); err != nil {
				t.Error(err)
			}
		}))
	}
	rows = append(rows, benchRow{"warm random 4 KiB reads/s, 4 threads", median(warmRand), median(directRand), ">= 10x"})

	// Cold random 4 KiB: lake bytes per byte asked (fresh 1 GiB object).
	var amps []float64
	for r := 0; r < runs; r++ {
		k := fmt.Sprintf("bench/rand-%d.bin", r)
		m.upload(k, 1<<30, uint64(300+r))
		cf, err := c.Open(ctx, "/lake/s3/"+k)
		if err != nil {
			t.Fatal(err)
		}
		m.proxy.Reset()
		rng := rand.New(rand.NewPCG(uint64(r), 9))
		buf := make([]byte, 4096)
		for i := 0; i < 1000; i++ {
			if _, err := cf.ReadAt(ctx, buf, rng.Int64N(1<<30-4096)); err != nil {
				t.Fatal(err)
			}
		}
		amps = append(amps, float64(m.lakeBytes())/float64(1000*4096))
	}
	rows = append(rows, benchRow{"cold random 4 KiB: lake bytes / bytes asked", median(amps), 0, "<= 16x"})

	// Warm stat latency.
	var p50s, p99s []float64
	for r := 0; r < runs; r++ {
		p50, p99 := statLatency(t, c, "/lake/direct/"+key, 2000)
		p50s, p99s = append(p50s, p50), append(p99s, p99)
	}
	rows = append(rows, benchRow{"warm stat latency p50 (us)", median(p50s), 0, "<= 200"})
	rows = append(rows, benchRow{"warm stat latency p99 (us)", median(p99s), 0, "printed"})

	fmt.Printf("\nlakemesh foundation benchmarks (3-node region, 4 MiB pages, MinIO on loopback; medians of %d runs)\n\n", runs)
	fmt.Printf("| figure | lakemesh | direct MinIO | ratio | goal |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio, peer := "", ""
		if r.peer > 0 {
			peer = fmt.Sprintf("%.0f", r.peer)
			ratio = fmt.Sprintf("%.2fx", r.value/r.peer)
		}
		fmt.Printf("| %s | %.1f | %s | %s | %s |\n", r.name, r.value, peer, ratio, r.goal)
	}
	fmt.Printf("| node RSS after 8 warm streams (MiB), memory tier 1 GiB | %s | | | printed |\n\n", rssStreams)
	fmt.Printf("CPU seconds per GiB of the cold sequential read (medians; this machine's %d cores give at most %[1]d CPU-s per second):\n\n", runtime.NumCPU())
	fmt.Printf("| | MinIO | cache nodes | client | total |\n|---|---|---|---|---|\n")
	fmt.Printf("| lakemesh cold | %.2f | %.2f | %.2f | %.2f |\n", coldCost.minio, coldCost.nodes, coldCost.client, coldCost.total())
	fmt.Printf("| direct GET | %.2f | | %.2f | %.2f |\n\n", directCost.minio, directCost.client, directCost.total())
}

// cpuSpent is the CPU time (user plus system seconds) of the mesh's
// processes: MinIO, every cache node, and this test binary (the clients).
type cpuSpent struct{ minio, nodes, client float64 }

func (m *mesh) cpu() cpuSpent {
	c := cpuSpent{minio: testenv.CPUSeconds(m.minio.Pid), client: testenv.SelfCPUSeconds()}
	for _, n := range m.nodes {
		c.nodes += testenv.CPUSeconds(n.cmd.Process.Pid)
	}
	return c
}

func (c cpuSpent) minus(o cpuSpent) cpuSpent {
	return cpuSpent{c.minio - o.minio, c.nodes - o.nodes, c.client - o.client}
}

func (c cpuSpent) per(units float64) cpuSpent {
	return cpuSpent{c.minio / units, c.nodes / units, c.client / units}
}

func (c cpuSpent) total() float64 { return c.minio + c.nodes + c.client }

// medianCPU is the run with the median total.
func medianCPU(runs []cpuSpent) cpuSpent {
	s := append([]cpuSpent(nil), runs...)
	sort.Slice(s, func(i, j int) bool { return s[i].total() < s[j].total() })
	return s[len(s)/2]
}

type benchRow struct {
	name        string
	value, peer float64
	goal        string
}

func timeIt(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func directGet(t *testing.T, c *s3.Client, key string) {
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	drain(out.Body, make([]byte, 1<<20))
}

// drain reads r to its end with reads of len(buf) and returns the bytes
// read. A benchmark's reader reads this way, not with
// io.CopyBuffer(io.Discard, r, buf): io.Discard's ReadFrom reads with its
// own 8 KiB buffer, whatever buf is, so every reader read 8 KiB at a time
// (and a FUSE mount's kernel, asked for 8 KiB first, read a small file in
// two requests).
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// opsPerSec runs op from n goroutines for d and returns operations per second.
func opsPerSec(n int, d time.Duration, op func(*rand.Rand)) float64 {
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	deadline := time.Now().Add(d)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			k := 0
			for time.Now().Before(deadline) {
				op(rng)
				k++
			}
			mu.Lock()
			total += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

func statLatency(t *testing.T, c *router.Client, path string, n int) (p50, p99 float64) {
	ctx := context.Background()
	var lat []float64
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := c.Stat(ctx, path); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, float64(time.Since(start).Microseconds()))
	}
	sort.Float64s(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

// nodeRSS reports the resident memory of each node process in MiB.
func nodeRSS(m *mesh) string {
	var parts []string
	for _, n := range m.nodes {
		out, err := exec.Command("ps", "-o", "rss=", "-p", strconv.Itoa(n.cmd.Process.Pid)).Output()
		if err != nil {
			continue
		}
		kb, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		parts = append(parts, fmt.Sprintf("%d", kb/1024))
	}
	return strings.Join(parts, " / ")
}
