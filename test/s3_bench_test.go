package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkS3GatewayWarmGet compares GETs of warm objects through the
// `lakemesh s3` gateway (3-node region, objects in the nodes' cache) with
// GETs of the same objects straight from MinIO (its own address, not the
// counting proxy), in the same run, one stream and four streams. The
// timed loop is one round of four parallel gateway GETs; every round also
// times the three other figures. The goal (gateway >= 1.2x MinIO) is
// printed, not enforced.
//
// The machine is shared, so it also prints the CPU time the serving
// processes used per GiB sent (the gateway and the nodes on one side,
// MinIO on the other, from /proc): on a busy machine throughput follows
// CPU share, and CPU per byte is the figure other loads move least.
//
//	go test ./test -run '^$' -bench BenchmarkS3GatewayWarmGet -benchtime 5x
func BenchmarkS3GatewayWarmGet(b *testing.B) {
	const (
		objects = 4
		size    = 64 << 20
	)
	m := newMesh(b, meshOptions{memorySize: "512MiB", pretouch: true})
	gw := startS3Gateway(b, m)
	viaGateway := benchS3Client(gw.url, gw.keyID, gw.secret)
	direct := benchS3Client("http://"+m.minio.Addr, m.minio.AccessKey, m.minio.SecretKey)
	var keys []string
	for i := 0; i < objects; i++ {
		k := fmt.Sprintf("bench/s3gw-%d.bin", i)
		m.upload(k, size, uint64(600+i))
		keys = append(keys, k)
	}
	ctx := context.Background()
	get := func(c *s3.Client, bucketName, key string) {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key)})
		if err != nil {
			b.Fatal(err)
		}
		n, err := drain(out.Body, make([]byte, 1<<20))
		out.Body.Close()
		if err != nil || n != size {
			b.Fatalf("GET %s: %d bytes, %v", key, n, err)
		}
	}
	oneStream := func(c *s3.Client, bucketName string) float64 {
		start := time.Now()
		get(c, bucketName, keys[0])
		return float64(size) / time.Since(start).Seconds() / 1e6
	}
	fourStreams := func(c *s3.Client, bucketName string) float64 {
		start := time.Now()
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Add(1)
			go func() { defer wg.Done(); get(c, bucketName, k) }()
		}
		wg.Wait()
		return float64(objects*size) / time.Since(start).Seconds() / 1e6
	}
	fourStreams(viaGateway, "s3") // warm the nodes' cache
	fourStreams(viaGateway, "s3")

	gatewaySide := gatewayPIDs(gw, m)
	minioSide := []int{m.minio.Pid}
	var gwCPU, minioCPU time.Duration // CPU time used while they served
	// The clients' (this process's) CPU time on each side: the same SDK
	// client reads both, so what differs is where its bytes come from.
	var gwClientCPU, minioClientCPU time.Duration
	var gwBytes, minioBytes int64
	self := []int{os.Getpid()}
	timed := func(pids []int, cpu *time.Duration, sent *int64, n int64, f func() float64) float64 {
		before, selfBefore := cpuTime(pids), cpuTime(self)
		r := f()
		*cpu += cpuTime(pids) - before
		client := cpuTime(self) - selfBefore
		if cpu == &gwCPU {
			gwClientCPU += client
		} else {
			minioClientCPU += client
		}
		*sent += n
		return r
	}
	// The whole machine's share of busy time (and of softirq time, which
	// no process is charged for: loopback TCP's receive work runs there)
	// during each side's four-stream rounds, from /proc/stat.
	var gwMachine, minioMachine machineUse
	var gw1, minio1, gw4, minio4 []float64
	b.SetBytes(objects * size)
	b.ResetTimer()
	for b.Loop() {
		gw4 = append(gw4, gwMachine.during(func() float64 {
			return timed(gatewaySide, &gwCPU, &gwBytes, objects*size, func() float64 { return fourStreams(viaGateway, "s3") })
		}))
		b.StopTimer()
		minio4 = append(minio4, minioMachine.during(func() float64 {
			return timed(minioSide, &minioCPU, &minioBytes, objects*size, func() float64 { return fourStreams(direct, bucket) })
		}))
		gw1 = append(gw1, timed(gatewaySide, &gwCPU, &gwBytes, size, func() float64 { return oneStream(viaGateway, "s3") }))
		minio1 = append(minio1, timed(minioSide, &minioCPU, &minioBytes, size, func() float64 { return oneStream(direct, bucket) }))
		b.StartTimer()
	}
	b.StopTimer()
	perGiB := func(cpu time.Duration, sent int64) float64 {
		return cpu.Seconds() / (float64(sent) / (1 << 30))
	}
	b.ReportMetric(perGiB(gwCPU, gwBytes), "gateway-cpu-s/GiB")
	b.ReportMetric(perGiB(minioCPU, minioBytes), "minio-cpu-s/GiB")
	b.ReportMetric(median(gw4), "gateway-4streams-MB/s")
	b.ReportMetric(median(minio4), "minio-4streams-MB/s")
	b.ReportMetric(median(gw4)/median(minio4), "ratio-4streams")
	b.ReportMetric(median(gw1), "gateway-1stream-MB/s")
	b.ReportMetric(median(minio1), "minio-1stream-MB/s")
	b.ReportMetric(median(gw1)/median(minio1), "ratio-1stream")
	verdict := func(r float64) string {
		if r >= 1.2 {
			return "meets the 1.2x goal"
		}
		return "below the 1.2x goal"
	}
	fmt.Printf("\nS3 gateway warm GET vs MinIO direct (%d objects of %d MiB, medians of %d rounds)\n", objects, size>>20, len(gw4))
	fmt.Printf("| streams | gateway MB/s | MinIO direct MB/s | ratio | goal >= 1.2x |\n|---|---|---|---|---|\n")
	fmt.Printf("| 1 | %.0f | %.0f | %.2fx | %s |\n", median(gw1), median(minio1), median(gw1)/median(minio1), verdict(median(gw1)/median(minio1)))
	fmt.Printf("| 4 | %.0f | %.0f | %.2fx | %s |\n\n", median(gw4), median(minio4), median(gw4)/median(minio4), verdict(median(gw4)/median(minio4)))
	fmt.Printf("CPU seconds per GiB sent: gateway and nodes %.2f, MinIO %.2f (%.2fx); the client reading them %.2f and %.2f\n",
		perGiB(gwCPU, gwBytes), perGiB(minioCPU, minioBytes), perGiB(minioCPU, minioBytes)/perGiB(gwCPU, gwBytes),
		perGiB(gwClientCPU, gwBytes), perGiB(minioClientCPU, minioBytes))
	fmt.Printf("The machine during the four-stream rounds (/proc/stat): busy %.0f%% through the gateway, %.0f%% from MinIO; softirq %.0f%% and %.0f%%\n\n",
		100*gwMachine.busyShare(), 100*minioMachine.busyShare(), 100*gwMachine.softirqShare(), 100*minioMachine.softirqShare())
}

// benchS3Client is the S3 client of the gateway benchmarks, the same on
// both sides: no checksum work beyond what S3 requires on either.
func benchS3Client(endpoint, keyID, secret string) *s3.Client {
	return s3.NewFromConfig(aws.Config{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
}

// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux configuration Go supports).
const clockTicks = 100

// cpuTime is the CPU time (user and system) the processes have used, from
// /proc/PID/stat; 0 where there is no /proc.
func cpuTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name's closing parenthesis: state is
		// field 3, utime and stime fields 14 and 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		user, _ := strconv.ParseInt(f[11], 10, 64)
		sys, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(user+sys) * time.Second / clockTicks
	}
	return total
}

// gatewayPIDs are the processes that serve a GET through the gateway:
// the gateway and the region's nodes.
func gatewayPIDs(gw *s3Gateway, m *mesh) []int {
	pids := []int{gw.proc.cmd.Process.Pid}
	for _, n := range m.nodes {
		pids = append(pids, n.cmd.Process.Pid)
	}
	return pids
}

// machineUse adds up the whole machine's CPU time (all CPUs, from the
// first line of /proc/stat) over the calls measured with during.
type machineUse struct{ busy, softirq, total float64 }

// procStat returns the machine's busy, softirq and total jiffies so far.
func procStat() (busy, softirq, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	// cpu user nice system idle iowait irq softirq steal ...
	for i, v := range strings.Fields(line)[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
		if i == 6 {
			softirq = x
		}
	}
	return busy, softirq, total
}

func (u *machineUse) during(f func() float64) float64 {
	b0, s0, t0 := procStat()
	r := f()
	b1, s1, t1 := procStat()
	u.busy, u.softirq, u.total = u.busy+b1-b0, u.softirq+s1-s0, u.total+t1-t0
	return r
}

func (u *machineUse) busyShare() float64    { return u.busy / max(u.total, 1) }
func (u *machineUse) softirqShare() float64 { return u.softirq / max(u.total, 1) }
