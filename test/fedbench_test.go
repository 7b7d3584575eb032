package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
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

// TestFederationBenchmarks prints federation's figures (issue 3) side by
// side with rclone reading the same MinIO through the same line, in the
// same run. Like TestMeshBenchmarks it is a report: it runs only with
// LAKEMESH_BENCH=1 (bench/run.sh federation sets it).
//
// The line a-c is 200 Mbit/s (25 MB/s) with a 20 ms rtt and a budget of
// 160 Mbit/s (20 MB/s); lines through b are slower (20 ms each way), so c
// reads straight from a. Bytes are counted at the line proxy, below
// lakemesh; rclone crosses the same proxy through a forwarded port.
func TestFederationBenchmarks(t *testing.T) {
	if os.Getenv("LAKEMESH_BENCH") != "1" {
		t.Skip("skipped: a benchmark report; run bench/run.sh federation (LAKEMESH_BENCH=1)")
	}
	runs := envInt("LAKEMESH_BENCH_RUNS", 3)
	fileMiB := int64(envInt("LAKEMESH_BENCH_FED_MIB", 64))
	fillGiB := int64(envInt("LAKEMESH_BENCH_FILL_GIB", 2))
	rclone := testenv.Binary(t, "rclone")

	const (
		capacity = 25_000_000 // bytes/s: 200 Mbit/s
		budget   = 20_000_000 // bytes/s: 160 Mbit/s
		rtt      = 20 * time.Millisecond
	)
	m := newFedMesh(t, fedOptions{
		capacity: map[string]int64{"a-c": capacity},
		budget:   map[string]string{"a-c": "160Mbps"},
		rtt:      map[string]time.Duration{"a-b": rtt, "a-c": rtt, "b-c": rtt},
		// The fill measures one line against its budget: its files stay
		// in a and c, so no demand spills through b. The spill row reads
		// another dataset that may.
		policies: `  - path: /lake/s3/fedbench/fill
    residency: [a, c]
`,
	})
	line := m.lineTo("a", "c")
	peer := &rclonePeer{bin: rclone, env: rcloneEnv(m.minio, line.Forward(t, m.minio.Addr))}
	ctx := context.Background()
	clients := make([]*router.Client, 8)
	for i := range clients {
		clients[i] = m.client("c")
	}

	// 1. Bytes crossed per unique byte, N readers on c's 4 nodes, cold.
	size := fileMiB * MiB
	fmt.Printf("\nFederation benchmarks: line a-c 200 Mbit/s, rtt %s, budget 160 Mbit/s; c has 4 nodes; %d MiB per file; medians of %d runs\n\n", rtt, fileMiB, runs)
	fmt.Printf("| figure | lakemesh | rclone through the same line | goal |\n|---|---|---|---|\n")
	var rcloneCross []float64
	for r := 0; r < runs; r++ {
		key := fmt.Sprintf("fedbench/rclone-%d.bin", r)
		m.upload(key, size, uint64(7000+r))
		m.resetLines()
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ { // four hosts, one rclone mount each
			wg.Add(1)
			go func() { defer wg.Done(); peer.cat(t, key) }()
		}
		wg.Wait()
		rcloneCross = append(rcloneCross, float64(m.intoRegion("c"))/float64(size))
	}
	for _, readers := range []int{1, 8, 64} {
		var cross []float64
		for r := 0; r < runs; r++ {
			key := fmt.Sprintf("fedbench/readers%d-%d.bin", readers, r)
			want := m.upload(key, size, uint64(8000+100*readers+r))
			m.resetLines()
			var wg sync.WaitGroup
			for i := 0; i < readers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i == 0 {
						if got := readAll(t, clients[0], "/lake/s3/"+key, 4*MiB); got != want {
							t.Errorf("%s read by %d readers: SHA-256 differs from the object's", key, readers)
						}
						return
					}
					readInto(t, clients[i%len(clients)], "/lake/s3/"+key, 4*MiB, io.Discard)
				}()
			}
			wg.Wait()
			cross = append(cross, float64(m.intoRegion("c"))/float64(size))
		}
		peerCell := "—"
		if readers == 8 {
			peerCell = fmt.Sprintf("%.3f (4 independent rclone readers, one per node)", median(rcloneCross))
		}
		fmt.Printf("| bytes crossed / unique bytes, %d readers on 4 nodes | %.4f | %s | <= 1.02 |\n", readers, median(cross), peerCell)
	}

	// 2. Fill time of a dataset into c against its budget, and the line's
	// busiest second. The fill reads every file once with a preload-class
	// client, four files at a time.
	parts := int(fillGiB * 8) // 128 MiB files
	fillBytes := int64(parts) * 128 * MiB
	preload := m.clientWith(router.DialConfig{Region: "c", Class: "preload"})
	fillDir := func(dir string) (took time.Duration) {
		for i := 0; i < parts; i++ {
			m.upload(fmt.Sprintf("fedbench/%s/part-%03d", dir, i), 128*MiB, uint64(9000+i))
		}
		m.resetLines()
		work := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					readInto(t, preload, fmt.Sprintf("/lake/s3/fedbench/%s/part-%03d", dir, i), 16*MiB, io.Discard)
				}
			}()
		}
		for i := 0; i < parts; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		return time.Since(start)
	}
	fill := fillDir("fill")
	samples := line.Samples()
	crossed := m.intoRegion("c")
	busiest := float64(testenv.MaxWindow(samples, 10)) / budget
	fillRatio := fill.Seconds() / (float64(fillBytes) / budget)

	m.resetLines()
	rcloneFill := timeIt(func() { peer.cat(t, "fedbench/fill/") })
	rcloneShare := float64(fillBytes) / rcloneFill.Seconds() / capacity
	fmt.Printf("| fill time of %d GiB into c / (bytes / budget) | %.3f (%s, %.1f MB/s, %.4f crossed per byte) | one rclone reader: %.2f of the line's capacity (%s) | <= 1.15 |\n",
		fillGiB, fillRatio, fill.Round(100*time.Millisecond), float64(fillBytes)/fill.Seconds()/1e6, float64(crossed)/float64(fillBytes), rcloneShare, rcloneFill.Round(100*time.Millisecond))
	fmt.Printf("| line rate over the busiest 1 s window / budget, during the fill | %.3f | — | <= 1.05 |\n", busiest)

	// The same fill of another dataset that may relay through b: demand
	// above a-c's budget spills to a-b-c (routes weighed by load), a-c
	// stays within its budget.
	spill := fillDir("spill")
	_, viaB := m.lineTo("b", "c").Bytes()
	spillCrossed := m.intoRegion("c")
	spillBusiest := float64(testenv.MaxWindow(line.Samples(), 10)) / budget
	fmt.Printf("| the same fill with a relay through b allowed: time / (bytes / a-c budget) | %.3f (%s, %.1f MB/s; %.0f%% through b; %.4f crossed per byte; a-c busiest 1 s %.3f of its budget) | — | printed |\n",
		spill.Seconds()/(float64(fillBytes)/budget), spill.Round(100*time.Millisecond), float64(fillBytes)/spill.Seconds()/1e6,
		100*float64(viaB)/float64(spillCrossed), float64(spillCrossed)/float64(fillBytes), spillBusiest)

	// 3. Time to first byte of a cold remote read, beyond one line rtt:
	// lakemesh (open + first 64 KiB, page owner in c -> claim -> a's node
	// -> lake) against a direct S3 GET through the same line.
	direct := s3.NewFromConfig(aws.Config{Region: m.minio.Region, Credentials: m.minio.Client().Options().Credentials}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String("http://" + line.Forward(t, m.minio.Addr))
		o.UsePathStyle = true
	})
	if _, err := direct.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err) // opens the connection, as lakemesh's are open
	}
	var ours, theirs []float64
	buf := make([]byte, 64<<10)
	for r := 0; r < max(runs, 5); r++ {
		key := fmt.Sprintf("fedbench/ttfb-%d.bin", r)
		m.upload(key, 4*MiB, uint64(9500+r))
		ours = append(ours, ms(timeIt(func() {
			f, err := clients[r%len(clients)].Open(ctx, "/lake/s3/"+key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.ReadAt(ctx, buf, 0); err != nil {
				t.Fatal(err)
			}
		}))-ms(rtt))
		key2 := fmt.Sprintf("fedbench/ttfb-direct-%d.bin", r)
		m.upload(key2, 4*MiB, uint64(9600+r))
		theirs = append(theirs, ms(timeIt(func() {
			out, err := direct.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key2)})
			if err != nil {
				t.Fatal(err)
			}
			io.ReadFull(out.Body, buf)
			out.Body.Close()
		}))-ms(rtt))
	}
	fmt.Printf("| extra time to first 64 KiB of a cold remote read, beyond one line rtt (%s) | %.1f ms | %.1f ms (direct S3 GET through the line) | printed |\n\n", rtt, median(ours), median(theirs))
}

// rclonePeer runs rclone against MinIO through a line's forwarded port.
type rclonePeer struct {
	bin string
	env []string
}

func rcloneEnv(minio *testenv.MinIOServer, endpoint string) []string {
	// This machine's AWS_* settings (a CA bundle, a profile) are not the
	// test MinIO's.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "RCLONE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"RCLONE_CONFIG_LAKE_TYPE=s3",
		"RCLONE_CONFIG_LAKE_PROVIDER=Minio",
		"RCLONE_CONFIG_LAKE_ACCESS_KEY_ID="+minio.AccessKey,
		"RCLONE_CONFIG_LAKE_SECRET_ACCESS_KEY="+minio.SecretKey,
		"RCLONE_CONFIG_LAKE_REGION="+minio.Region,
		"RCLONE_CONFIG_LAKE_ENDPOINT=http://"+endpoint,
	)
}

// cat reads key (an object, or every object under a prefix ending in /)
// to nowhere, as one reader.
func (p *rclonePeer) cat(t testing.TB, key string) {
	cmd := exec.Command(p.bin, "cat", "lake:"+bucket+"/"+key)
	cmd.Env = p.env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("rclone cat %s: %v: %s", key, err, stderr.Bytes())
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
