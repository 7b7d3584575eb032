package ufs_test

import (
	"bytes"
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/internal/testenv"
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
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
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
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime) - syscall.TimevalToNsec(before.Utime) +
		syscall.TimevalToNsec(after.Stime) - syscall.TimevalToNsec(before.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/get")
}
