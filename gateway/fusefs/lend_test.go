package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/lakemesh/lakemesh/router"
)

// lendingPuts reads each upload as router.Client.Put does when it can,
// through NextChunk, and keeps the last held chunks unreleased, as a
// transport that has not sent them yet would: more than a window holds,
// so the window moves on past pieces still lent. At release it checks
// that a chunk's bytes are still the ones lent. The bytes then go to the
// inner namespace.
type lendingPuts struct {
	router.Namespace
	held    int
	chunks  atomic.Int64 // lent by uploads
	changed atomic.Int64 // chunks whose bytes changed before their release
}

func (l *lendingPuts) Put(ctx context.Context, p string, r io.Reader) (router.Entry, error) {
	chunks, ok := r.(router.ChunkReader)
	if !ok {
		return router.Entry{}, fmt.Errorf("put %s: the upload (%T) lends no chunks", p, r)
	}
	type chunk struct {
		b, was  []byte
		release func()
	}
	var all []byte
	var held []chunk
	release := func(c chunk) {
		if !bytes.Equal(c.b, c.was) {
			l.changed.Add(1)
		}
		c.release()
	}
	for {
		b, rel, err := chunks.NextChunk(1 << 20)
		if len(b) > 0 {
			l.chunks.Add(1)
			all = append(all, b...)
			held = append(held, chunk{b, bytes.Clone(b), rel})
			if len(held) > l.held {
				release(held[0])
				held = held[1:]
			}
		} else if rel != nil {
			rel()
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			for _, c := range held {
				c.release()
			}
			return router.Entry{}, err
		}
	}
	for _, c := range held {
		release(c)
	}
	return l.Namespace.Put(ctx, p, bytes.NewReader(all))
}

// A streaming upload lends Put the window's bytes, which stay as they were
// until released even once the window has moved on (their buffers are
// not reused before), and bytes the window gave up to the spool (a
// stalled Put) are lent from buffers of their own.
func TestMountUploadLendsWindow(t *testing.T) {
	for _, stalled := range []bool{false, true} {
		t.Run(fmt.Sprintf("stalled=%v", stalled), func(t *testing.T) {
			lend := &lendingPuts{held: 2 * windowBuffers * windowBuffer >> 20}
			stall := &stalledPuts{release: make(chan struct{})}
			if !stalled {
				close(stall.release)
			}
			tm := mountLakes(t, mountOptions{wrap: func(ns router.Namespace) router.Namespace {
				lend.Namespace = ns
				stall.Namespace = lend
				return stall
			}})
			data := randomBytes(streamAfter+9*windowBuffer+4321, 5)
			f, err := os.Create(tm.path("lend.bin"))
			if err != nil {
				t.Fatal(err)
			}
			writeInPieces(t, f, data, 777_777)
			if stalled {
				close(stall.release)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(filepath.Join(tm.lake, "lend.bin")); !bytes.Equal(got, data) {
				t.Fatalf("the lake has %d bytes, not the %d written", len(got), len(data))
			}
			if lend.chunks.Load() == 0 {
				t.Fatal("no streaming upload lent a chunk")
			}
			if n := lend.changed.Load(); n > 0 {
				t.Fatalf("%d of %d lent chunks changed before their release", n, lend.chunks.Load())
			}
		})
	}
}
