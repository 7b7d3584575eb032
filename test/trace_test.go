package test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lakemesh/lakemesh/router"
)

// Every client read is a span with a child per page fetch that says which
// node served it and where the bytes came from.
func TestReadsAreTraced(t *testing.T) {
	m := newMesh(t, meshOptions{})
	const size = 12 * MiB
	m.upload("traced/file.bin", size, 20)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := router.Dial(ctx, router.DialConfig{Consul: m.consul.HTTPAddr, Region: m.region, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	sources := func() map[int64]string {
		t.Helper()
		f, err := c.Open(ctx, "/lake/s3/traced/file.bin")
		if err != nil {
			t.Fatal(err)
		}
		before := len(rec.Ended())
		if _, err := f.ReadAt(ctx, make([]byte, size), 0); err != nil {
			t.Fatal(err)
		}
		spans := rec.Ended()[before:]
		reads := map[string]bool{}
		for _, s := range spans {
			if s.Name() == "lakemesh.read" {
				reads[s.SpanContext().SpanID().String()] = true
			}
		}
		if len(reads) != 1 {
			t.Fatalf("one ReadAt made %d lakemesh.read spans, want 1", len(reads))
		}
		got := map[int64]string{}
		for _, s := range spans {
			if s.Name() != "page.fetch" {
				continue
			}
			if !reads[s.Parent().SpanID().String()] {
				t.Fatalf("page.fetch span is not a child of the read span")
			}
			var page int64 = -1
			var src, node string
			for _, a := range s.Attributes() {
				switch a.Key {
				case "lakemesh.page":
					page = a.Value.AsInt64()
				case "lakemesh.source":
					src = a.Value.AsString() + src
				case "lakemesh.short_circuit":
					if a.Value.AsBool() {
						src += " (short-circuit)"
					}
				case "lakemesh.node":
					node = a.Value.AsString()
				}
			}
			if node == "" {
				t.Fatalf("page %d fetch does not name the node that served it", page)
			}
			got[page] = src
		}
		if len(got) != 3 {
			t.Fatalf("a 3-page read made page.fetch spans for pages %v", got)
		}
		return got
	}
	// Cold: from the lake. The client, on the nodes' host, has its
	// node fill a page and copies it out of the node's memory itself
	// (another process: process_vm_readv) where it may ptrace the nodes.
	cold := sources()
	sc := ""
	if mayReadNodeMemory() {
		sc = " (short-circuit)"
	}
	if cold[0] != "lake"+sc {
		t.Fatalf("cold read: page 0 came from %q, want lake%s (all: %v)", cold[0], sc, cold)
	}
	// Warm: from the nodes' memory, copied the same way.
	want := "memory" + sc
	warm := sources()
	for page, src := range warm {
		if src != want {
			t.Fatalf("warm read: page %d came from %q, want %s (all: %v)", page, src, want, warm)
		}
	}
}

// Small sequential reads (io.Copy's 32 KiB, a kernel's 128 KiB) cost one
// node round trip per page, not one per read.
func TestSmallSequentialReadsFetchPagesOnce(t *testing.T) {
	m := newMesh(t, meshOptions{nodes: 2})
	const size = 12*MiB + 12345
	want := m.upload("small/reads.bin", size, 21)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := router.Dial(ctx, router.DialConfig{Consul: m.consul.HTTPAddr, Region: m.region, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := readAll(t, c, "/lake/s3/small/reads.bin", 32*1024); got != want {
		t.Fatal("small sequential reads returned wrong bytes")
	}
	fetches, reads := 0, 0
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "page.fetch":
			fetches++
		case "lakemesh.read":
			reads++
		}
	}
	t.Logf("%d reads of 32 KiB made %d page fetches", reads, fetches)
	if fetches != 4 {
		t.Fatalf("%d sequential 32 KiB reads of a 4-page file made %d page fetches, want 4", reads, fetches)
	}
}

// mayReadNodeMemory says whether this process may read the memory of the
// node processes it started, as a client's short-circuit memory reads
// do: as root, or as their parent unless Yama's ptrace_scope is 2 or 3.
func mayReadNodeMemory() bool {
	if os.Geteuid() == 0 {
		return true
	}
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	scope := strings.TrimSpace(string(b))
	return err != nil || scope == "0" || scope == "1"
}
