package fusefs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/router"
)

// cpuTime is the CPU time this process has used, user and system: for a
// mount in the same process, the writer's system calls and the mount's
// work together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardPuts is a namespace whose Put reads the whole upload and keeps
// none of it (the lake gets an empty file, for the entry): what a
// benchmark of the mount alone needs.
type discardPuts struct {
	router.Namespace
}

func (d discardPuts) Put(ctx context.Context, p string, r io.Reader) (router.Entry, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return router.Entry{}, err
	}
	return d.Namespace.Put(ctx, p, bytes.NewReader(nil))
}

// BenchmarkMountCheckpointWrite writes one 256 MiB file with 1 MiB writes,
// then fsync and close, as bench/fuse.sh's checkpoint row does: through a
// real mount whose uploads are read and discarded (the mount's own cost
// per byte: FUSE, spool, streaming upload, without a node), and into a
// local file on the spool's disk for scale. One op is one file.
//
//	go test ./gateway/fusefs -run '^$' -bench CheckpointWrite -benchtime 3x
func BenchmarkMountCheckpointWrite(b *testing.B) {
	const size = 256 << 20
	chunk := randomBytes(1<<20, 1)
	write := func(b *testing.B, name string) {
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < size; off += len(chunk) {
			if _, err := f.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		os.Remove(name)
	}
	b.Run("mount", func(b *testing.B) {
		tm := mountLakes(b, mountOptions{wrap: func(ns router.Namespace) router.Namespace { return discardPuts{ns} }})
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			write(b, tm.path("ckpt.bin"))
		}
		b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N)*(1<<30)/size, "cpu-s/GiB")
	})
	b.Run("local", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			write(b, filepath.Join(dir, "ckpt.bin"))
		}
		b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N)*(1<<30)/size, "cpu-s/GiB")
	})
}
