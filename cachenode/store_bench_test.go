package cachenode

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// memSource serves the same bytes for every file: a Source as fast as
// memory, so benchmarks measure the cache.
type memSource struct{ data []byte }

func (m memSource) Fetch(_ context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m.data[off:min(off+n, ref.Size)])), nil
}

const benchFile = 64 << 20

func benchRef(version int) FileRef {
	return FileRef{Mount: "/lake/bench", Path: "data.bin", Version: strconv.Itoa(version), Size: benchFile}
}

// warmStore fills a 64 MiB file into a store.
func warmStore(b *testing.B, cfg StoreConfig) (*Store, FileRef, []byte) {
	b.Helper()
	s := openTestStore(b, cfg)
	data := randomBytes(99, benchFile)
	ref := benchRef(0)
	for i := int64(0); i*s.PageSize() < benchFile; i++ {
		lo := i * s.PageSize()
		if err := s.Put(ref, i, 0, data[lo:lo+s.PageSize()]); err != nil {
			b.Fatal(err)
		}
	}
	return s, ref, data
}

func benchStoreRead(b *testing.B, s *Store, ref FileRef, size int64, wantTier Tier) {
	p := make([]byte, size)
	ps := s.PageSize()
	b.SetBytes(size)
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		if off+size > benchFile {
			off = 0
		}
		_, tier, err := s.Read(ref, off/ps, off%ps, p)
		if err != nil || tier != wantTier {
			b.Fatalf("Read: %s, %v", tier, err)
		}
		off += size
	}
}

// Warm sequential reads of 1 MiB from the memory tier (CRC of every block
// included).
func BenchmarkStoreReadMemory(b *testing.B) {
	s, ref, _ := warmStore(b, StoreConfig{MemoryBytes: 2 * benchFile, Logger: quietLogger()})
	benchStoreRead(b, s, ref, 1<<20, TierMemory)
}

// Warm sequential reads of 1 MiB from the disk tier (page cache warm; no
// memory tier, so nothing is promoted).
func BenchmarkStoreReadDisk(b *testing.B) {
	s, ref, _ := warmStore(b, StoreConfig{Dir: b.TempDir(), DiskBytes: 2 * benchFile, Logger: quietLogger()})
	benchStoreRead(b, s, ref, 1<<20, TierDisk)
}

// Cold sequential fills through the cache from an in-memory Source, one
// 4 MiB page per iteration, into memory (and disk), with eviction running.
func BenchmarkCacheColdFill(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  func(b *testing.B) StoreConfig
	}{
		{"memory", func(*testing.B) StoreConfig { return StoreConfig{MemoryBytes: 128 << 20} }},
		{"memory+disk", func(b *testing.B) StoreConfig {
			return StoreConfig{MemoryBytes: 128 << 20, Dir: b.TempDir(), DiskBytes: 256 << 20}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tc.cfg(b)
			cfg.Logger = quietLogger()
			s := openTestStore(b, cfg)
			src := memSource{data: randomBytes(98, benchFile)}
			c := newTestCache(b, s, src, CacheConfig{})
			p := make([]byte, s.PageSize())
			pages := benchFile / s.PageSize()
			b.SetBytes(s.PageSize())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ref := benchRef(i / int(pages)) // a new version is a cold file
				off := int64(i%int(pages)) * s.PageSize()
				if _, fs, err := c.ReadAt(context.Background(), ref, p, off, true); err != nil || fs[0].Tier != TierLake {
					b.Fatalf("ReadAt: %v %+v", err, fs)
				}
			}
		})
	}
}

// Warm random 4 KiB reads through the cache from the memory tier: the
// cost of one small read, checksum of its 32 KiB block included.
func BenchmarkCacheRandom4KWarm(b *testing.B) {
	s, ref, _ := warmStore(b, StoreConfig{MemoryBytes: 2 * benchFile, Logger: quietLogger()})
	c := newTestCache(b, s, memSource{}, CacheConfig{})
	b.Run("serial", func(b *testing.B) {
		r := rand.New(rand.NewPCG(1, 2))
		p := make([]byte, 4<<10)
		b.SetBytes(4 << 10)
		for i := 0; i < b.N; i++ {
			off := r.Int64N(benchFile - 4<<10)
			if _, _, err := c.ReadAt(context.Background(), ref, p, off, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(4 << 10)
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 2))
			p := make([]byte, 4<<10)
			for pb.Next() {
				off := r.Int64N(benchFile - 4<<10)
				if _, _, err := c.ReadAt(context.Background(), ref, p, off, false); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// Warm random 4 KiB reads from the disk tier alone.
func BenchmarkStoreRandom4KDisk(b *testing.B) {
	s, ref, _ := warmStore(b, StoreConfig{Dir: b.TempDir(), DiskBytes: 2 * benchFile, Logger: quietLogger()})
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, 4<<10)
	ps := s.PageSize()
	b.SetBytes(4 << 10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := r.Int64N(benchFile - 4<<10)
		if (off%ps)+4<<10 > ps {
			off -= 4 << 10
		}
		if _, _, err := s.Read(ref, off/ps, off%ps, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlockCRC verifies 32 KiB blocks of memory that is not in the
// CPU's caches (512 MiB, walked in order), and of one block in cache,
// with blockCRC and with coldBlockCRC: the figures behind using each
// where it is used.
func BenchmarkBlockCRC(b *testing.B) {
	const bs = DefaultBlockSize
	cold := randomBytes(7, 512<<20)
	for _, fn := range []struct {
		name string
		crc  func([]byte) uint32
	}{{"blockCRC", blockCRC}, {"coldBlockCRC", coldBlockCRC}} {
		b.Run(fn.name+"/memory", func(b *testing.B) {
			b.SetBytes(int64(len(cold)))
			for b.Loop() {
				for off := 0; off < len(cold); off += bs {
					fn.crc(cold[off : off+bs])
				}
			}
		})
		b.Run(fn.name+"/cached", func(b *testing.B) {
			blk := cold[:bs]
			b.SetBytes(bs)
			for b.Loop() {
				fn.crc(blk)
			}
		})
	}
}

// Cold 100 KiB files filled through the cache from an in-memory Source
// into memory and disk, packed as on a node (the FUSE benchmark's small
// files cold, without the network): one file per iteration. It reports
// the process's CPU per file, which a disk write's wait does not count.
func BenchmarkCacheColdSmallFiles(b *testing.B) {
	const size = 100 << 10
	s := openTestStore(b, StoreConfig{MemoryBytes: 256 << 20, Dir: b.TempDir(), DiskBytes: 1 << 30, PackBelow: 1 << 20, Logger: quietLogger()})
	src := memSource{data: randomBytes(97, size)}
	c := newTestCache(b, s, src, CacheConfig{})
	p := make([]byte, size)
	b.SetBytes(size)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ref := FileRef{Mount: "/lake/bench", Path: "small/" + strconv.Itoa(i), Version: "1", Size: size}
		if _, fs, err := c.ReadAt(context.Background(), ref, p, 0, true); err != nil || fs[0].Tier != TierLake {
			b.Fatalf("ReadAt: %v %+v", err, fs)
		}
	}
	c.Close() // the disk writes of the last files
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime) - syscall.TimevalToNsec(before.Utime) +
		syscall.TimevalToNsec(after.Stime) - syscall.TimevalToNsec(before.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/file")
}
