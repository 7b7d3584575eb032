package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/internal/testenv"
	"github.com/lakemesh/lakemesh/router"
)

const GiB = 1 << 30

// gRPC and HTTP/2 framing cross a line with the bytes; everything else
// that crosses (Has probes, metadata) is small. Bytes into a region
// divided by the unique bytes read must stay within this.
const lineOverhead = 1.02

// The federation tests share one three-region mesh and run in order:
// each leaves the caches as the next expects.
//
// Topology: a holds the lake; a-b and a-c cost the same (rtt 20ms, 0.02
// per GB), b-c is cheap (rtt 4ms, 0.001 per GB), so c reads from a
// directly, and b would read from a too if it did not know c holds the
// bytes. a-b has a small budget for the budget test.
func TestFederation(t *testing.T) {
	const budgetAB = 12 << 20 // 12 MiB/s
	m := newFedMesh(t, fedOptions{
		budget: map[string]string{"a-b": "12MiB/s", "a-c": "400MB/s", "b-c": "400MB/s"},
		cost:   map[string]string{"a-b": "0.02", "a-c": "0.02", "b-c": "0.001"},
		rtt:    map[string]time.Duration{"a-b": 20 * time.Millisecond, "a-c": 20 * time.Millisecond, "b-c": 4 * time.Millisecond},
		// The budget tests keep their files in a and b (residency), so
		// their demand stays on a-b: with a-c-b allowed, demand above
		// a-b's budget spills to it (SaturatedLineSpillsToTheNextRoute)
		// and the line would no longer be asked for more than it may carry.
		policies: `  - path: /lake/s3/secret
    residency: [a]
  - path: /lake/s3/bulk
    residency: [a, b]
  - path: /lake/s3/classes
    residency: [a, b]
  - path: /lake/s3/natsrestart
    residency: [a, b]
`,
	})
	size := int64(GiB)
	if testing.Short() {
		size = 256 * MiB
	}
	want := m.upload("data/big.bin", size, 7)

	t.Run("EightReadersOnFourNodesCrossOnce", func(t *testing.T) {
		m.resetLines()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			c := m.client("c")
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got := readAll(t, c, "/lake/s3/data/big.bin", 4*MiB); got != want {
					errs <- errors.New("a reader in c read wrong bytes")
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		into := m.intoRegion("c")
		ac, bc := lineDown(m.lineTo("a", "c")), lineDown(m.lineTo("b", "c"))
		t.Logf("bytes into c: %d (a-c %d, b-c %d) for %d unique bytes: %.4fx; from MinIO: %d", into, ac, bc, size, float64(into)/float64(size), m.lake.BytesFromTarget())
		if float64(into) > float64(size)*lineOverhead {
			t.Fatalf("%d bytes crossed into c for %d unique bytes: %.3fx, want <= %.2fx", into, size, float64(into)/float64(size), lineOverhead)
		}
		if into < size {
			t.Fatalf("only %d bytes crossed into c for %d unique bytes: the lines are not in the path", into, size)
		}
		if lake := m.lake.BytesFromTarget(); float64(lake) > float64(size)*lineOverhead {
			t.Fatalf("MinIO sent %d bytes for %d unique: the lake was read more than once", lake, size)
		}
	})

	t.Run("ClosestCopyServesTheNextRegion", func(t *testing.T) {
		m.resetLines()
		c := m.client("b")
		if got := readAll(t, c, "/lake/s3/data/big.bin", 4*MiB); got != want {
			t.Fatal("b read wrong bytes")
		}
		_, fromC := m.lineTo("b", "c").Bytes()
		_, fromA := m.lineTo("a", "b").Bytes()
		t.Logf("bytes into b: %d over b-c (from c's cache), %d over a-b (from the lake's region)", fromC, fromA)
		if float64(fromC) < float64(size)*0.99 {
			t.Fatalf("b got %d bytes from c, want the whole %d: b did not read c's copy", fromC, size)
		}
		if fromA > size/100 {
			t.Fatalf("%d bytes crossed a-b: b should read from c, which holds the bytes over a cheaper line", fromA)
		}
	})

	t.Run("ResidencyRefusedBeforeAnyByteCrosses", func(t *testing.T) {
		m.upload("secret/pii.bin", 8*MiB, 9)
		m.resetLines()
		c := m.client("c")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f, err := c.Open(ctx, "/lake/s3/secret/pii.bin")
		if err == nil {
			_, err = f.ReadAt(ctx, make([]byte, 4096), 0)
		}
		if !errors.Is(err, cachenode.ErrResidency) {
			t.Fatalf("read of a path with residency [a] from c: got %v, want an error wrapping ErrResidency", err)
		}
		if !strings.Contains(err.Error(), "residency") {
			t.Fatalf("error %q does not say residency", err)
		}
		for name, l := range m.lines {
			if up, down := l.Bytes(); up+down > 64<<10 {
				t.Fatalf("line %s carried %d+%d bytes during a refused read", name, up, down)
			}
		}
	})

	t.Run("BudgetHoldsUnderDemand", func(t *testing.T) {
		// Four readers of four different files: demand well above the
		// budget (each stream alone could fill the line).
		const fileSize = 40 * MiB
		for i := 0; i < 4; i++ {
			m.upload(fmt.Sprintf("bulk/b%d.bin", i), fileSize, uint64(20+i))
		}
		m.resetLines()
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			c := m.client("b")
			wg.Add(1)
			go func() {
				defer wg.Done()
				readAll(t, c, fmt.Sprintf("/lake/s3/bulk/b%d.bin", i), 4*MiB)
			}()
		}
		wg.Wait()
		samples := m.lineTo("a", "b").Samples()
		checkBudget(t, samples, budgetAB)
	})

	t.Run("InteractiveKeepsItsShareDuringBulk", func(t *testing.T) {
		// Three bulk readers (class preload, 4 pages at a time each) keep
		// the 12 MiB/s a->b budget busy; an interactive reader then asks
		// for 8 MiB/s, two thirds of the budget, more than a fair share
		// against the bulk demand: with priority it gets its rate.
		const bulkSize, paced, rate = 40 * MiB, 32 * MiB, 8 * MiB
		for i := 0; i < 3; i++ {
			m.upload(fmt.Sprintf("classes/bulk%d.bin", i), bulkSize, uint64(60+i))
		}
		m.upload("classes/interactive.bin", paced, 70)
		m.resetLines()
		bulkDone := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			c := m.clientWith(router.DialConfig{Region: "b", Class: "preload", Readahead: -1})
			wg.Add(1)
			go func() {
				defer wg.Done()
				readAll(t, c, fmt.Sprintf("/lake/s3/classes/bulk%d.bin", i), 16*MiB)
			}()
		}
		go func() { wg.Wait(); close(bulkDone) }()
		time.Sleep(time.Second)

		c := m.client("b")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f, err := c.Open(ctx, "/lake/s3/classes/interactive.bin")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, MiB)
		start := time.Now()
		for i := int64(0); i < paced/MiB; i++ {
			// Ask for MiB i at its time on an 8 MiB/s schedule.
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / (rate / MiB))))
			if _, err := f.ReadAt(ctx, buf, i*MiB); err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(start)
		select {
		case <-bulkDone:
			t.Fatal("the bulk readers finished before the interactive one: nothing competed")
		default:
		}
		got := float64(paced) / took.Seconds()
		t.Logf("interactive reader: %.1f MiB/s of the %d MiB/s it asked for, while bulk readers ran", got/MiB, rate/MiB)
		if got < 0.85*rate {
			t.Fatalf("interactive reader got %.1f MiB/s during bulk transfers, want >= 0.85 x %d MiB/s", got/MiB, rate/MiB)
		}
		<-bulkDone
	})

	t.Run("RegionNATSRestartedMidTransfer", func(t *testing.T) {
		// b reads four files from a over the 12 MiB/s budget while b's
		// NATS server (claims, the governor) restarts: the reads complete
		// with the right bytes and no second carries more than the budget
		// (the nodes fall back to static shares, then return).
		done := m.readFour(t, "b", "natsrestart", 24*MiB, 40)
		time.Sleep(2 * time.Second) // well into the transfer (about 8 s at the budget)
		m.nats["b"].Restart(t)
		done()
		samples := m.lineTo("a", "b").Samples()
		maxWin := testenv.MaxWindow(samples, 10)
		t.Logf("NATS of b restarted mid-transfer: busiest 1 s window %.3f of the budget", float64(maxWin)/budgetAB)
		if float64(maxWin) > 1.05*budgetAB {
			t.Fatalf("busiest 1 s window carried %d bytes with b's NATS restarting, above 1.05 x the budget %d", maxWin, budgetAB)
		}
	})

	t.Run("SaturatedLineSpillsToTheNextRoute", func(t *testing.T) {
		// Four readers in b of four cold files that may go anywhere: a-b
		// is the cheapest route (weight 50 against 65 for a-c-b), but at
		// 12 MiB/s it cannot carry the demand. Once a fetch would wait
		// longer than 1.3 s behind its node's queue on a-b, it takes
		// a-c-b: a-b still runs within its budget, b gets more than a-b
		// alone could give, and every byte still enters b once.
		const fileSize = 40 * MiB
		m.readFour(t, "b", "spill", fileSize, 80)()
		const unique = 4 * fileSize
		ab, bc := lineDown(m.lineTo("a", "b")), lineDown(m.lineTo("b", "c"))
		into := ab + bc
		// From the first byte into b to the last, over either line: the
		// readers' opens are not the lines' doing.
		abs, bcs := m.lineTo("a", "b").Samples(), m.lineTo("b", "c").Samples()
		took := busySpan(abs, bcs)
		rate := float64(unique) / took.Seconds()
		maxWin := testenv.MaxWindow(abs, 10)
		t.Logf("a-b, 100 ms samples (KiB): %v", kib(abs))
		t.Logf("b-c, 100 ms samples (KiB): %v", kib(bcs))
		t.Logf("into b: %d over a-b, %d over b-c (%.0f%% through c) in %s: %.2fx the a-b budget; %.4fx the unique bytes; busiest 1 s on a-b %.3f of its budget",
			ab, bc, 100*float64(bc)/float64(into), took, rate/budgetAB, float64(into)/unique, float64(maxWin)/budgetAB)
		if bc < unique/10 {
			t.Fatalf("only %d of %d bytes came through c: the saturated line did not spill", bc, into)
		}
		if rate < 1.2*budgetAB {
			t.Fatalf("b read at %.1f MiB/s, not above the %d MiB/s a-b alone carries", rate/MiB, budgetAB/MiB)
		}
		if float64(into) > unique*lineOverhead {
			t.Fatalf("%d bytes entered b for %d unique: %.3fx, want <= %.2fx", into, unique, float64(into)/unique, lineOverhead)
		}
		if float64(maxWin) > 1.05*budgetAB {
			t.Fatalf("busiest 1 s window on a-b carried %d bytes, above 1.05 x the budget %d", maxWin, budgetAB)
		}
	})

	t.Run("ClaimerKilledMidTransfer", func(t *testing.T) {
		// 4 readers in c of a cold 256 MiB file; one of c's nodes (each
		// holds the claims of the pages it owns) is killed -9 a third of
		// the way: the reads complete, and the bytes crossed stay within
		// the unique bytes plus what the dead node had in flight (at most
		// 16 fills of 4 MiB).
		const fileSize = 256 * MiB
		want := m.upload("claims/big.bin", fileSize, 50)
		m.resetLines()
		var wg sync.WaitGroup
		bad := make(chan string, 4)
		for i := 0; i < 4; i++ {
			c := m.client("c")
			wg.Add(1)
			go func() {
				defer wg.Done()
				if readAll(t, c, "/lake/s3/claims/big.bin", 4*MiB) != want {
					bad <- "a reader in c read wrong bytes"
				}
			}()
		}
		deadline := time.Now().Add(2 * time.Minute)
		for m.intoRegion("c") < fileSize/3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		victim := m.nodes["c"][0]
		m.stop(victim, syscall.SIGKILL)
		t.Logf("killed %s after %d bytes crossed into c", victim.id, m.intoRegion("c"))
		wg.Wait()
		close(bad)
		for msg := range bad {
			t.Fatal(msg)
		}
		into := m.intoRegion("c")
		const inFlight = 16 * 4 * MiB
		t.Logf("bytes into c: %d for %d unique (%.4fx); allowed: unique + %d in flight at the kill", into, fileSize, float64(into)/fileSize, inFlight)
		if float64(into) > (fileSize+inFlight)*lineOverhead {
			t.Fatalf("%d bytes crossed into c, more than the unique %d plus the %d the killed node could have had in flight", into, fileSize, inFlight)
		}
	})

	t.Run("CutLineRelaysOrFailsNamingTheLine", func(t *testing.T) {
		wantRelay := m.upload("cut/relay.bin", 32*MiB, 13)
		m.lineTo("a", "c").Cut()
		defer m.lineTo("a", "c").Restore()
		m.resetLines()
		c := m.client("c")
		if got := readAll(t, c, "/lake/s3/cut/relay.bin", 4*MiB); got != wantRelay {
			t.Fatal("c read wrong bytes through the relay")
		}
		_, ab := m.lineTo("a", "b").Bytes()
		_, bc := m.lineTo("b", "c").Bytes()
		t.Logf("with a-c cut: %d bytes over a-b and %d over b-c", ab, bc)
		if bc < 32*MiB || ab < 32*MiB {
			t.Fatalf("with a-c cut, the bytes should relay through b: a-b %d, b-c %d", ab, bc)
		}

		m.upload("cut/none.bin", 8*MiB, 14)
		m.lineTo("a", "b").Cut()
		defer m.lineTo("a", "b").Restore()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		start := time.Now()
		f, err := c.Open(ctx, "/lake/s3/cut/none.bin")
		if err == nil {
			_, err = f.ReadAt(ctx, make([]byte, MiB), 0)
		}
		took := time.Since(start)
		if err == nil {
			t.Fatal("read with every route from a cut succeeded")
		}
		if ctx.Err() != nil {
			t.Fatalf("read with every route cut hung for %s: %v", took, err)
		}
		if !strings.Contains(err.Error(), "line a->") {
			t.Fatalf("error does not name the line: %v", err)
		}
		t.Logf("with every route cut the read failed in %s: %v", took.Round(time.Millisecond), err)
	})
}

// readFour uploads four cold files of size bytes under dir (seeds seed
// to seed+3), resets the lines' counters and starts a reader in region r
// for each; the function it returns waits for them and fails t if any
// read wrong bytes.
func (m *fedMesh) readFour(t *testing.T, r, dir string, size int64, seed uint64) (wait func()) {
	t.Helper()
	sums := make([][32]byte, 4)
	for i := range sums {
		sums[i] = m.upload(fmt.Sprintf("%s/f%d.bin", dir, i), size, seed+uint64(i))
	}
	m.resetLines()
	var wg sync.WaitGroup
	bad := make(chan string, len(sums))
	for i := range sums {
		c := m.client(r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if readAll(t, c, fmt.Sprintf("/lake/s3/%s/f%d.bin", dir, i), 4*MiB) != sums[i] {
				bad <- fmt.Sprintf("%s/f%d.bin read wrong bytes", dir, i)
			}
		}()
	}
	return func() {
		t.Helper()
		wg.Wait()
		close(bad)
		for msg := range bad {
			t.Fatal(msg)
		}
	}
}

func lineDown(l *testenv.LineProxy) int64 {
	_, down := l.Bytes()
	return down
}

// checkBudget checks 100 ms samples of a line's bytes against a budget:
// every 1 s window at most 1.05x, and at least 0.9x on average from the
// first byte to the last.
func checkBudget(t *testing.T, samples []int64, budget int64) {
	t.Helper()
	first, last := -1, -1
	for i, s := range samples {
		if s > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatal("no bytes crossed the line")
	}
	busy := samples[first : last+1]
	var total int64
	for _, s := range busy {
		total += s
	}
	maxWin := testenv.MaxWindow(busy, 10)
	t.Logf("100 ms samples (KiB): %v", kib(busy))
	avg := float64(total) / (float64(len(busy)) / 10)
	t.Logf("line: %d bytes in %.1f s: average %.2f of the budget, busiest 1 s window %.3f of it", total, float64(len(busy))/10, avg/float64(budget), float64(maxWin)/float64(budget))
	if float64(maxWin) > 1.05*float64(budget) {
		t.Fatalf("busiest 1 s window carried %d bytes, above 1.05 x the budget %d", maxWin, budget)
	}
	if avg < 0.9*float64(budget) {
		t.Fatalf("the line ran at %.0f B/s on average, below 0.9 x the budget %d", avg, budget)
	}
}

// busySpan is the time from the first 100 ms sample with bytes to the
// last one, inclusive, over several lines' samples taken since the same
// reset.
func busySpan(series ...[]int64) time.Duration {
	first, last := -1, -1
	for _, xs := range series {
		for i, x := range xs {
			if x > 0 {
				if first < 0 || i < first {
					first = i
				}
				last = max(last, i)
			}
		}
	}
	if first < 0 {
		return 0
	}
	return time.Duration(last-first+1) * 100 * time.Millisecond
}

func kib(xs []int64) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = x >> 10
	}
	return out
}
