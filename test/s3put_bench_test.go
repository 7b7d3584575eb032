package test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkS3GatewayWriteBackPut compares PUTs of 64 MiB objects through
// the `lakemesh s3` gateway into a write_mode: back path (answered once
// the region's journal has the bytes on disk) with PUTs of the same
// bytes straight to MinIO, in the same run, one stream and four streams.
// No goal is set for it; it shows what a checkpoint written over S3
// costs the writer. Each round also prints the CPU the serving side used
// per GiB (gateway and nodes, or MinIO), from /proc.
//
//	go test ./test -run '^$' -bench BenchmarkS3GatewayWriteBackPut -benchtime 5x
func BenchmarkS3GatewayWriteBackPut(b *testing.B) {
	const (
		objects = 4
		size    = 64 << 20
	)
	m := newMesh(b, meshOptions{policies: "  - path: /lake/s3/wbput\n    write_mode: back\n"})
	gw := startS3Gateway(b, m)
	viaGateway := benchS3Client(gw.url, gw.keyID, gw.secret)
	direct := benchS3Client("http://"+m.minio.Addr, m.minio.AccessKey, m.minio.SecretKey)
	data := make([][]byte, objects)
	for i := range data {
		data[i] = patternAt(uint64(700+i), 0, size)
	}
	ctx := context.Background()
	put := func(c *s3.Client, bucketName, key string, body []byte) {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			b.Fatal(err)
		}
	}
	round := 0
	streams := func(c *s3.Client, bucketName string, n int) float64 {
		round++
		start := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { put(c, bucketName, fmt.Sprintf("wbput/obj-%d-%d.bin", round, i), data[i]) })
		}
		wg.Wait()
		return float64(n*size) / time.Since(start).Seconds() / 1e6
	}
	streams(viaGateway, "s3", objects) // a first round of each: connections, journal directories
	streams(direct, bucket, objects)

	gatewaySide := gatewayPIDs(gw, m)
	minioSide := []int{m.minio.Pid}
	var gwCPU, minioCPU time.Duration
	var gwBytes, minioBytes int64
	timed := func(pids []int, cpu *time.Duration, sent *int64, n int, f func() float64) float64 {
		before := cpuTime(pids)
		r := f()
		*cpu += cpuTime(pids) - before
		*sent += int64(n * size)
		return r
	}
	var gw1, minio1, gw4, minio4 []float64
	b.SetBytes(objects * size)
	b.ResetTimer()
	for b.Loop() {
		gw4 = append(gw4, timed(gatewaySide, &gwCPU, &gwBytes, objects, func() float64 { return streams(viaGateway, "s3", objects) }))
		b.StopTimer()
		minio4 = append(minio4, timed(minioSide, &minioCPU, &minioBytes, objects, func() float64 { return streams(direct, bucket, objects) }))
		gw1 = append(gw1, timed(gatewaySide, &gwCPU, &gwBytes, 1, func() float64 { return streams(viaGateway, "s3", 1) }))
		minio1 = append(minio1, timed(minioSide, &minioCPU, &minioBytes, 1, func() float64 { return streams(direct, bucket, 1) }))
		b.StartTimer()
	}
	b.StopTimer()
	perGiB := func(cpu time.Duration, sent int64) float64 { return cpu.Seconds() / (float64(sent) / (1 << 30)) }
	b.ReportMetric(median(gw4), "gateway-4streams-MB/s")
	b.ReportMetric(median(minio4), "minio-4streams-MB/s")
	b.ReportMetric(median(gw1), "gateway-1stream-MB/s")
	b.ReportMetric(median(minio1), "minio-1stream-MB/s")
	fmt.Printf("\nS3 gateway PUT into write_mode: back vs MinIO direct PUT (%d MiB objects, medians of %d rounds)\n", size>>20, len(gw4))
	fmt.Printf("| streams | gateway MB/s | MinIO direct MB/s | ratio |\n|---|---|---|---|\n")
	fmt.Printf("| 1 | %.0f | %.0f | %.2fx |\n", median(gw1), median(minio1), median(gw1)/median(minio1))
	fmt.Printf("| 4 | %.0f | %.0f | %.2fx |\n", median(gw4), median(minio4), median(gw4)/median(minio4))
	fmt.Printf("CPU seconds per GiB written: gateway and nodes %.2f, MinIO %.2f\n\n", perGiB(gwCPU, gwBytes), perGiB(minioCPU, minioBytes))
}
