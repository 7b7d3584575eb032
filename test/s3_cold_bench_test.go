package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkS3GatewayColdSmallGet GETs 100 KiB objects that no node holds
// yet through the `lakemesh s3` gateway (3-node region, no proxy in front
// of MinIO), 16 at a time, then the same objects straight from MinIO, in
// the same run; each round uploads a fresh set. It prints objects per
// second on each side, the CPU the serving processes spent per object
// (from /proc) and what a cold GET cost MinIO in requests, from MinIO's
// own counters: a GET through the gateway is the object's stat
// (its attrs with it), its bytes, and now and then a listing of its
// directory for the stats of its neighbours.
//
//	go test ./test -run '^$' -bench BenchmarkS3GatewayColdSmallGet -benchtime 3x
func BenchmarkS3GatewayColdSmallGet(b *testing.B) {
	const (
		objects = 1000
		size    = 100 << 10
		readers = 16
	)
	m := newMesh(b, meshOptions{memorySize: "512MiB", directMount: true})
	gw := startS3Gateway(b, m)
	viaGateway := benchS3Client(gw.url, gw.keyID, gw.secret)
	direct := benchS3Client("http://"+m.minio.Addr, m.minio.AccessKey, m.minio.SecretKey)
	ctx := context.Background()
	getAll := func(c *s3.Client, bucketName string, keys []string) float64 {
		work := make(chan string)
		var wg sync.WaitGroup
		start := time.Now()
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 64<<10)
				for k := range work {
					out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(k)})
					if err != nil {
						b.Error(err)
						continue
					}
					n, err := drain(out.Body, buf)
					out.Body.Close()
					if err != nil || n != size {
						b.Errorf("GET %s: %d bytes, %v", k, n, err)
					}
				}
			}()
		}
		for _, k := range keys {
			work <- k
		}
		close(work)
		wg.Wait()
		return float64(len(keys)) / time.Since(start).Seconds()
	}
	apis := []string{"HeadObject", "GetObject", "ListObjectsV2"}
	requests := func() map[string]int64 {
		r := map[string]int64{}
		for _, api := range apis {
			r[api] = m.minio.Requests(b, api)
		}
		return r
	}
	gatewaySide := gatewayPIDs(gw, m)
	minioSide := []int{m.minio.Pid}
	var gwRate, minioRate []float64
	var gwCPU, gwMinioCPU, minioCPU time.Duration // CPU used while each side served
	gwRequests := map[string]int64{}
	got := 0
	for b.Loop() {
		b.StopTimer()
		round := len(gwRate)
		keys := make([]string, objects)
		for i := range keys {
			keys[i] = fmt.Sprintf("bench/cold-%d/%04d.bin", round, i)
		}
		putMany(b, m, keys, func(i int) []byte { return patternAt(uint64(round*objects+i), 0, size) })
		before := requests()
		gw0, gwm0 := cpuTime(gatewaySide), cpuTime(minioSide)
		b.StartTimer()
		gwRate = append(gwRate, getAll(viaGateway, "direct", keys))
		b.StopTimer()
		gwCPU += cpuTime(gatewaySide) - gw0
		gwMinioCPU += cpuTime(minioSide) - gwm0
		for api, n := range requests() {
			gwRequests[api] += n - before[api]
		}
		got += objects
		m0 := cpuTime(minioSide)
		minioRate = append(minioRate, getAll(direct, bucket, keys))
		minioCPU += cpuTime(minioSide) - m0
		b.StartTimer()
	}
	b.StopTimer()
	per := func(api string) float64 { return float64(gwRequests[api]) / float64(got) }
	b.ReportMetric(median(gwRate), "gateway-objects/s")
	b.ReportMetric(median(minioRate), "minio-objects/s")
	b.ReportMetric(median(gwRate)/median(minioRate), "ratio")
	b.ReportMetric(per("HeadObject"), "lake-HEAD/object")
	fmt.Printf("\nS3 gateway cold GETs of %d KiB objects vs MinIO direct (%d objects a round, %d readers, medians of %d rounds)\n", size>>10, objects, readers, len(gwRate))
	fmt.Printf("| | gateway, cold | MinIO direct | ratio |\n|---|---|---|---|\n")
	fmt.Printf("| objects/s | %.0f | %.0f | %.2fx |\n", median(gwRate), median(minioRate), median(gwRate)/median(minioRate))
	fmt.Printf("| MinIO requests per object: HEAD, GET, LIST | %.2f, %.2f, %.3f | 0, 1, 0 | |\n", per("HeadObject"), per("GetObject"), per("ListObjectsV2"))
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(got) }
	fmt.Printf("| CPU-ms per object: gateway and nodes, MinIO | %.2f, %.2f | -, %.2f | |\n\n", ms(gwCPU), ms(gwMinioCPU), ms(minioCPU))
}
