package cachenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// maxFillAttempts bounds how often one read re-plans a page whose bytes
// vanished from the store between its fill and its copy (eviction, a
// checksum failure) or whose shared fetch was abandoned by its owner.
const maxFillAttempts = 8

// errAbandoned completes a fetch whose owner gave up before starting it;
// its waiters plan again (one of them then owns the fetch).
var errAbandoned = errors.New("fetch abandoned before it started")

// pageRead is the part of one ReadAt (or Prefetch) that lies in one page.
type pageRead struct {
	index      int64
	start, end int64  // page-relative bytes wanted
	dst        []byte // where they go; nil for a fill only (Prefetch)
	slot       int    // index of its report in ReadAt's fetches
	ahead      bool   // a readahead's (Prefetch): its fetches' origins wait for a read to claim them

	owned  []*fetch // fetches this read started, this attempt
	waited []*fetch // other callers' fetches it waits for, this attempt
	// waitedLive: one of waited was still fetching when planned (the
	// others had their bytes already and were being stored).
	waitedLive bool

	tier    Tier
	fetched int64
	origin  *Origin // merged from the fetches it owned, when their Source reports one, and claimed
	claimed *Origin // what it claimed of readaheads' origins (ClaimAhead)
	doneAt  time.Time
}

// fetch is one ranged Source fetch of a run of a page's missing blocks.
// While in flight it is listed in Cache.inflight, so a caller that needs
// one of its blocks waits for it instead of fetching again. It is
// removed from there only after its bytes are in the store (or it failed),
// so every block is at all times stored, in flight, or neither and then
// fetched by exactly one planner (plans run under Cache.mu).
type fetch struct {
	id     PageID
	ref    FileRef
	index  int64
	b0, b1 int   // blocks [b0, b1)
	off, n int64 // page-relative bytes

	ctx    context.Context // the owner's values, cancelled by Close or when no caller waits
	cancel context.CancelFunc
	stop   func() bool // detaches ctx from Cache.ctx
	done   chan struct{}
	// held is closed once the bytes are in the memory tier, or it would
	// not take them, or the fetch failed or was abandoned; stored once the
	// fetch has left inflight: its bytes are in the store (on disk too),
	// or it failed or was abandoned (AwaitFills waits for these).
	held, stored chan struct{}

	// Guarded by Cache.mu until done is closed, read-only after.
	refs     int  // callers waiting for it, owner included
	started  bool // a goroutine runs it
	finished bool
	data     []byte
	err      error
	origin   *Origin // where the Source says the bytes came from, if it says
	// ahead: a readahead's fetch, whose origin no read owns; the first
	// read that uses its bytes claims it (claimed; see ClaimAhead).
	ahead, claimed bool
}

func (f *fetch) covers(b int) bool { return f.b0 <= b && b < f.b1 }

// crossedAhead reports whether f is a readahead's fetch whose bytes
// crossed a line: its origin waits for a read to claim it. (A readahead
// from the lake or a peer of the region crossed none: nothing to report.)
func (f *fetch) crossedAhead() bool {
	return f.ahead && f.origin != nil && len(f.origin.Lines) > 0
}

// fill makes the bytes of every pending read available and copies them
// into their dst, planning, fetching and waiting as often as needed (at
// most maxFillAttempts times per page).
func (c *Cache) fill(ctx context.Context, ref FileRef, pending []*pageRead, sequential bool) error {
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == maxFillAttempts {
			return fmt.Errorf("read %s page %d: bytes left the store %d times before they could be copied: %w",
				ref, pending[0].index, attempt, ErrMissing)
		}
		if err := c.plan(ctx, ref, pending, sequential); err != nil {
			return err
		}
		if err := c.startAndWait(ctx, pending, sequential && c.spans(ctx, ref)); err != nil {
			c.releaseAll(pending)
			return fmt.Errorf("read %s: %w", ref, err)
		}
		var retry []*pageRead
		var firstErr error
		for _, r := range pending {
			again, err := c.assemble(ref, r)
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
			case again:
				retry = append(retry, r)
			}
		}
		c.releaseAll(pending)
		if firstErr != nil {
			return firstErr
		}
		pending = retry
	}
	return nil
}

// plan decides, for each pending read, which missing blocks of its fill
// range it fetches itself (runs of blocks no one fetches) and which
// in-flight fetches it waits for. It registers its own fetches as in
// flight before it lets go of Cache.mu.
func (c *Cache) plan(ctx context.Context, ref FileRef, pending []*pageRead, sequential bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrStoreClosed
	}
	bs := c.store.BlockSize()
	id := ref.ID()
	for _, r := range pending {
		r.owned, r.waited, r.waitedLive = nil, nil, false
		length := c.store.PageLen(ref, r.index)
		fillOff, fillEnd := r.start/bs*bs, r.end
		if sequential {
			fillOff, fillEnd = 0, length
		}
		pid := PageID{File: id, Index: r.index}
		active := c.inflight[pid]
		var cur *fetch
		for _, sp := range c.store.Missing(ref, r.index, fillOff, fillEnd-fillOff) {
			for b := int(sp.Off / bs); int64(b)*bs < sp.End(); b++ {
				if i := slices.IndexFunc(active, func(f *fetch) bool { return f.covers(b) }); i >= 0 {
					if f := active[i]; !slices.Contains(r.waited, f) {
						f.refs++
						r.waited = append(r.waited, f)
						if !f.finished {
							r.waitedLive = true
							c.waits.Add(1)
						}
					}
					cur = nil
					continue
				}
				if cur != nil && cur.b1 == b {
					cur.b1++
					continue
				}
				cur = c.newFetch(ctx, ref, pid, b)
				cur.ahead = r.ahead
				r.owned = append(r.owned, cur)
			}
		}
		for _, f := range r.owned {
			f.off = int64(f.b0) * bs
			f.n = min(int64(f.b1)*bs, length) - f.off
			c.inflight[pid] = append(c.inflight[pid], f)
		}
	}
	return nil
}

func (c *Cache) newFetch(ctx context.Context, ref FileRef, id PageID, b int) *fetch {
	// A shared fetch must not die with the caller that happened to start
	// it: it keeps the owner's values (trace) but not its cancellation, and
	// is cancelled by Close or when every caller waiting for it has left.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &fetch{
		id: id, ref: ref, index: id.Index, b0: b, b1: b + 1,
		ctx: fctx, cancel: cancel, stop: context.AfterFunc(c.ctx, cancel),
		done: make(chan struct{}), held: make(chan struct{}), stored: make(chan struct{}), refs: 1,
	}
}

// startAndWait starts the reads' own fetches, each taking a fetch slot
// (the bound on concurrent Source fetches), and waits until every fetch
// the reads depend on is done. A read never waits on anything while it
// holds unstarted fetches, so waits cannot form a cycle. With chain, a
// fetch that takes up where the one before ends (the rest of a page, then
// the next page from its start) runs in one Source fetch with it, up to
// ExtentPages pages.
func (c *Cache) startAndWait(ctx context.Context, pending []*pageRead, chain bool) error {
	var runs [][]*fetch
	for _, r := range pending {
		for _, f := range r.owned {
			if k := len(runs); chain && k > 0 && len(runs[k-1]) < ExtentPages && c.follows(runs[k-1][len(runs[k-1])-1], f) {
				runs[k-1] = append(runs[k-1], f)
				continue
			}
			runs = append(runs, []*fetch{f})
		}
	}
	for _, run := range runs {
		var err error
		select {
		case c.fetchSlots <- struct{}{}:
			c.mu.Lock()
			if c.closed.Load() {
				err = ErrStoreClosed
				<-c.fetchSlots
			} else {
				for _, f := range run {
					f.started = true
				}
				c.wg.Add(1)
			}
			c.mu.Unlock()
		case <-ctx.Done():
			err = ctx.Err()
		case <-c.ctx.Done():
			err = ErrStoreClosed
		}
		if err != nil {
			c.abandon(pending)
			return err
		}
		c.dispatch(run)
	}
	for _, r := range pending {
		for _, f := range slices.Concat(r.owned, r.waited) {
			select {
			case <-f.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// Fillers: a run is fetched by a goroutine that stays for the next run
// for fillerIdle, rather than one started for it. A fetch through the S3
// SDK runs hundreds of frames deep; a new goroutine's stack grew by
// copying three or four times on every fill, which cost a tenth of a
// node's CPU on cold small files. A waiting filler's stack keeps its size
// (halved at most by each GC). A filler is started only when none is
// waiting, so there are about as many as runs ever ran at once (each holds
// a fetch slot), plus those between two runs when the next one came.
const fillerIdle = 10 * time.Second

// dispatch hands run, which holds a fetch slot, to a waiting filler, or
// starts one.
func (c *Cache) dispatch(run []*fetch) {
	select {
	case c.idleFillers <- run:
	default:
		go c.filler(run)
	}
}

// filler fetches run, then each run handed to it, until none came for
// fillerIdle or the cache is closed.
func (c *Cache) filler(run []*fetch) {
	idle := time.NewTimer(fillerIdle)
	defer idle.Stop()
	for {
		c.run(run)
		idle.Reset(fillerIdle)
		c.fillersWaiting.Add(1)
		select {
		case run = <-c.idleFillers:
			c.fillersWaiting.Add(-1)
		case <-idle.C:
			c.fillersWaiting.Add(-1)
			return
		case <-c.ctx.Done():
			c.fillersWaiting.Add(-1)
			return
		}
	}
}

// follows reports whether fetch b starts where fetch a ends: a runs to the
// end of its page and b starts the next page.
func (c *Cache) follows(a, b *fetch) bool {
	return a.id.File == b.id.File && b.index == a.index+1 && b.off == 0 &&
		a.off+a.n == c.store.PageLen(a.ref, a.index)
}

// spans reports whether the Source may be asked for ranges across pages
// of ref.
func (c *Cache) spans(ctx context.Context, ref FileRef) bool {
	s, ok := c.src.(SpanSource)
	return ok && s.Spans(ctx, ref)
}

// abandon completes the reads' own fetches that never started, so their
// waiters plan again.
func (c *Cache) abandon(pending []*pageRead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range pending {
		for _, f := range r.owned {
			if f.started || f.finished {
				continue
			}
			c.detachLocked(f)
			f.err, f.finished = errAbandoned, true
			close(f.done)
			close(f.held)
			close(f.stored)
			f.stop()
			f.cancel()
		}
	}
}

// run performs a run of fetches of consecutive bytes of one file (most
// often one fetch) with one Source fetch. As each fetch's bytes arrive, it
// wakes that fetch's waiters and puts the bytes in the memory tier, where
// short-circuit readers find them at once. A run of several fetches (a
// sequential reader's extent) has a second goroutine write its pages to
// the disk tier as they arrive, so reading the next page from the Source
// overlaps creating and writing this one's file: a slow disk slows the
// run's disk writes, not its reads. The fetch slot is held until every
// page of the run is on disk, which bounds the bytes waiting for the disk.
func (c *Cache) run(run []*fetch) {
	defer c.wg.Done()
	defer func() { <-c.fetchSlots }()
	first := run[0]
	ctx := first.ctx
	if len(run) > 1 {
		// The waiters of one fetch leaving must not cut the bytes of the
		// fetches after it: the run's own context ends with Close.
		rctx, cancel := context.WithCancel(context.WithoutCancel(first.ctx))
		defer cancel()
		defer context.AfterFunc(c.ctx, cancel)()
		ctx = rctx
	}
	var total int64
	for _, f := range run {
		total += f.n
	}
	c.fetches.Add(1)
	rc, err := c.src.Fetch(ctx, first.ref, first.index*c.store.PageSize()+first.off, total)
	stored := true
	var writes chan stagedFetch
	var written chan bool
	if len(run) > 1 {
		// The run's Source fetch has a context of its own (above), so
		// the writer may end each fetch as soon as its page is on disk.
		writes, written = make(chan stagedFetch, len(run)), make(chan bool, 1)
		go func() {
			ok := true
			for w := range writes {
				ok = c.writeStaged(w.f, w.p) && ok
				c.endFetch(w.f)
			}
			written <- ok
		}()
	}
	for _, f := range run {
		var data []byte
		var crcs []uint32
		if err == nil {
			data, crcs, err = readChecked(rc, c.store.bufs.get(f.n), c.store.BlockSize())
			if err != nil {
				c.fetchErrors.Add(1)
			}
		} else if f == first {
			c.fetchErrors.Add(1)
		}
		var origin *Origin
		ferr := err
		if err == nil {
			c.fetchedBytes.Add(f.n)
			if or, ok := rc.(OriginReader); ok {
				o := or.Origin()
				origin = &o
			}
		} else {
			ferr = fmt.Errorf("fill %s page %d bytes [%d,%d): %w", f.ref, f.index, f.off, f.off+f.n, err)
		}
		// The waiters copy from the fetch itself, so they are woken
		// before the bytes are stored: a cold read does not wait for the
		// page's files to be created and written. The fetch stays in
		// inflight until its bytes are on disk, so a planner meanwhile
		// waits on it (done at once) instead of fetching again: a block
		// is still always stored, in flight, or neither.
		c.mu.Lock()
		f.data, f.err, f.origin, f.finished = data, ferr, origin, true
		if f.crossedAhead() {
			c.unclaimed.Add(1)
		}
		close(f.done)
		c.mu.Unlock()
		if testHookBeforeStage != nil {
			testHookBeforeStage()
		}
		var staged *stagedPut
		if err == nil {
			var perr error
			if staged, perr = c.store.stagePut(f.ref, f.index, f.off, data, crcs); perr != nil {
				stored = false
				c.storeFailed(f, perr)
			}
		}
		close(f.held)
		if writes != nil {
			writes <- stagedFetch{f, staged}
		} else {
			stored = c.writeStaged(f, staged) && stored
		}
	}
	if writes != nil {
		close(writes)
		stored = <-written && stored
	}
	if cm, ok := rc.(Committer); ok && err == nil {
		cm.Commit(stored)
	}
	if rc != nil {
		rc.Close()
	}
	if writes == nil {
		// Only now: the fetch's context is the Source fetch's, and a
		// reader cancelled before its Close may drop what it holds (an
		// HTTP response that has not seen EOF, its connection).
		c.endFetch(first)
	}
}

// testHookBeforeStage, set by tests, runs after a fetch's waiters are
// woken and before its bytes go to the store: a slow memory tier.
var testHookBeforeStage func()

// stagedFetch is a fetch whose bytes wait for the disk tier.
type stagedFetch struct {
	f *fetch
	p *stagedPut
}

// writeStaged writes a fetch's staged bytes (if any) to the disk tier and
// reports whether the bytes were kept.
func (c *Cache) writeStaged(f *fetch, p *stagedPut) bool {
	if err := p.finish(); err != nil {
		c.storeFailed(f, err)
		return false
	}
	return true
}

// endFetch takes a stored (or failed) fetch out of inflight and ends it.
func (c *Cache) endFetch(f *fetch) {
	c.mu.Lock()
	c.detachLocked(f)
	c.keepAheadLocked(f)
	c.mu.Unlock()
	close(f.stored)
	f.stop()
	f.cancel()
}

func (c *Cache) storeFailed(f *fetch, err error) {
	c.storeErrors.Add(1)
	c.log.Debug("fetched bytes not stored", "file", f.ref, "page", f.index, "err", err)
}

// readChecked fills buf from rc (anything short is an error) and returns
// the checksum of each block of it, bs bytes from the start of buf. A
// block is checksummed as soon as it has arrived, while its bytes are
// still in the CPU's cache: reads are asked for at most CheckRun bytes.
func readChecked(rc io.Reader, buf []byte, bs int64) ([]byte, []uint32, error) {
	n := len(buf)
	crcs := make([]uint32, (int64(n)+bs-1)/bs)
	k, summed := 0, int64(0)
	for k < n {
		m, err := rc.Read(buf[k:min(k+CheckRun, n)])
		k += m
		for ; summed < int64(len(crcs)); summed++ {
			end := min((summed+1)*bs, int64(n))
			if end > int64(k) {
				break
			}
			crcs[summed] = blockCRC(buf[summed*bs : end])
		}
		switch {
		case k == n:
		case errors.Is(err, io.EOF):
			return nil, nil, fmt.Errorf("short fetch: %d of %d bytes: %w", k, n, io.ErrUnexpectedEOF)
		case err != nil:
			return nil, nil, fmt.Errorf("fetch failed after %d of %d bytes: %w", k, n, err)
		}
	}
	return buf, crcs, nil
}

// CheckRun is how many bytes to read at a time before checksumming them,
// so that the check reads them from the CPU's cache (half a typical L2)
// rather than from memory a second time: fills here, and short-circuit
// readers (router) of page files.
const CheckRun = 256 << 10

// detachLocked removes f from inflight if it is still there; c.mu is held.
func (c *Cache) detachLocked(f *fetch) {
	list := c.inflight[f.id]
	if i := slices.Index(list, f); i >= 0 {
		list = slices.Delete(list, i, i+1)
		if len(list) == 0 {
			delete(c.inflight, f.id)
		} else {
			c.inflight[f.id] = list
		}
	}
}

// releaseAll drops the reads' holds on their fetches of this attempt. A
// fetch nobody waits for any more is cancelled and leaves inflight.
func (c *Cache) releaseAll(pending []*pageRead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range pending {
		for _, f := range slices.Concat(r.owned, r.waited) {
			f.refs--
			if f.refs == 0 && !f.finished {
				c.detachLocked(f)
				f.cancel()
			}
		}
		r.owned, r.waited = nil, nil
	}
}

// assemble copies a read's bytes into its dst: from the fetches it owned
// or waited for where they cover, from the store elsewhere. It reports
// again if it must plan once more (a shared fetch was abandoned, or bytes
// left the store), and the error of a fetch it needed.
func (c *Cache) assemble(ref FileRef, r *pageRead) (again bool, err error) {
	bs := c.store.BlockSize()
	all := slices.Concat(r.owned, r.waited)
	b0, b1 := int(r.start/bs), int((r.end+bs-1)/bs)
	for _, f := range all {
		if f.err == nil || f.b1 <= b0 || f.b0 >= b1 {
			continue
		}
		if errors.Is(f.err, errAbandoned) {
			return true, nil
		}
		return false, f.err
	}
	r.tier, r.fetched, r.origin = "", 0, nil
	for _, f := range r.owned {
		r.fetched += f.n
		r.origin = mergeOrigin(r.origin, f.origin)
	}
	switch {
	case r.origin != nil && len(r.origin.Lines) > 0:
		r.tier = TierRemote
	case len(r.owned) > 0:
		r.tier = TierLake
	case r.waitedLive:
		r.tier = TierWait
	case len(r.waited) > 0:
		// Bytes fetched already, on their way into the store: as good
		// as held in memory (the memory tier keeps the fetch's buffer).
		r.tier = TierMemory
	}
	if !r.ahead {
		// Kept across attempts: a claim is made once.
		r.claimed = mergeOrigin(r.claimed, c.ClaimAhead(ref, r.index))
		r.origin = mergeOrigin(r.origin, r.claimed)
	}
	if r.dst == nil {
		r.doneAt = time.Now()
		return false, nil
	}
	for pos := r.start; pos < r.end; {
		b := int(pos / bs)
		if i := slices.IndexFunc(all, func(f *fetch) bool { return f.err == nil && f.covers(b) }); i >= 0 {
			f := all[i]
			hi := min(r.end, f.off+f.n)
			copy(r.dst[pos-r.start:hi-r.start], f.data[pos-f.off:hi-f.off])
			pos = hi
			continue
		}
		next := r.end
		for _, f := range all {
			if f.err == nil && f.off > pos && f.off < next {
				next = f.off
			}
		}
		_, tier, err := c.store.Read(ref, r.index, pos, r.dst[pos-r.start:next-r.start])
		if errors.Is(err, ErrMissing) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s page %d: %w", ref, r.index, err)
		}
		if r.tier == "" || (r.tier == TierMemory && tier == TierDisk) {
			r.tier = tier
		}
		pos = next
	}
	r.doneAt = time.Now()
	return false, nil
}

// mergeOrigin adds the origin of one more fetch of a page to what a read
// reports for that page.
func mergeOrigin(into, o *Origin) *Origin {
	if o == nil {
		return into
	}
	if into == nil {
		c := *o
		c.Lines = slices.Clone(o.Lines)
		return &c
	}
	into.Crossed += o.Crossed
	into.Wait += o.Wait
	into.Cost += o.Cost
	into.Ahead = into.Ahead || o.Ahead
	for _, l := range o.Lines {
		if !slices.Contains(into.Lines, l) {
			into.Lines = append(into.Lines, l)
		}
	}
	return into
}
