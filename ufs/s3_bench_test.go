package ufs_test

import (
	"bytes"
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/ufs"
)

// BenchmarkS3ReadRangeSmall reads a 100 KiB object whole with ReadRange,
// a cache node's fill of a cold small file, 16 at a time, from a real
// MinIO. It reports this process's CPU per GET (the lake client's side
// alone: MinIO's is its own).
//
//	go test ./ufs -run '^$' -bench BenchmarkS3ReadRangeSmall -benchtime 3000x
func BenchmarkS3ReadRangeSmall(b *testing.B) {
	m := testenv.MinIO(b)
	m.SetEnv(b)
	m.CreateBucket(b, "bench")
	const size = 100 << 10
	data := randomBytes(size, 77)
	m.PutObject(b, "bench", "small.bin", data)
	fs := openLake(b, m.URI("bench", ""))
	ctx := context.Background()
	fi, err := fs.Stat(ctx, "small.bin")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	before := processCPU()
	b.ResetTimer()
	b.SetParallelism(8) // 16 readers on this machine's 2 cores
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, size)
		for pb.Next() {
			r, err := fs.ReadRange(ctx, "small.bin", fi.Version, 0, size)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.ReadFull(r, buf)
			r.Close()
			if err != nil || !bytes.Equal(buf[:64], data[:64]) {
				b.Errorf("read: %v", err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-before).Microseconds())/float64(b.N), "cpu-us/get")
}

// BenchmarkS3Stat stats a 100 KiB object with StatAttrs (a HEAD), 16 at a
// time, from a real MinIO: sent by the adapter itself (lean) and, in the
// same run, through the SDK's HeadObject. It reports this process's CPU
// per stat.
//
//	go test ./ufs -run '^$' -bench BenchmarkS3Stat -benchtime 3000x
func BenchmarkS3Stat(b *testing.B) {
	m := testenv.MinIO(b)
	m.SetEnv(b)
	m.CreateBucket(b, "bench")
	m.PutObject(b, "bench", "small.bin", randomBytes(100<<10, 78))
	for _, lean := range []bool{true, false} {
		b.Run(map[bool]string{true: "lean", false: "sdk"}[lean], func(b *testing.B) {
			fs := openLake(b, m.URI("bench", ""))
			defer fs.Close()
			if !lean {
				ufs.S3WithoutLean(fs)
			}
			ctx := context.Background()
			before := processCPU()
			b.ResetTimer()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if fi, _, err := fs.(ufs.AttrFS).StatAttrs(ctx, "small.bin"); err != nil || fi.Size != 100<<10 {
						b.Errorf("stat: %+v, %v", fi, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-before).Microseconds())/float64(b.N), "cpu-us/stat")
		})
	}
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
}
