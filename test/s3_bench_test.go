package test

import (
	"context"
	"fmt"
	"io"
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
//	go test ./test -run '^$' -bench BenchmarkS3GatewayWarmGet -benchtime 5x
func BenchmarkS3GatewayWarmGet(b *testing.B) {
	const (
		objects = 4
		size    = 64 << 20
	)
	m := newMesh(b, meshOptions{memorySize: "512MiB"})
	gw := startS3Gateway(b, m)
	// The same client settings on both sides: no checksum work on either.
	newClient := func(endpoint, keyID, secret string) *s3.Client {
		return s3.NewFromConfig(aws.Config{
			Region:                     "us-east-1",
			Credentials:                credentials.NewStaticCredentialsProvider(keyID, secret, ""),
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		}, func(o *s3.Options) {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		})
	}
	viaGateway := newClient(gw.url, gw.keyID, gw.secret)
	direct := newClient("http://"+m.minio.Addr, m.minio.AccessKey, m.minio.SecretKey)
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
		n, err := io.CopyBuffer(io.Discard, out.Body, make([]byte, 1<<20))
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

	var gw1, minio1, gw4, minio4 []float64
	b.SetBytes(objects * size)
	b.ResetTimer()
	for b.Loop() {
		gw4 = append(gw4, fourStreams(viaGateway, "s3"))
		b.StopTimer()
		minio4 = append(minio4, fourStreams(direct, bucket))
		gw1 = append(gw1, oneStream(viaGateway, "s3"))
		minio1 = append(minio1, oneStream(direct, bucket))
		b.StartTimer()
	}
	b.StopTimer()
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
}
