package transfer

import (
	"context"
	"time"
)

// grantAnswer is the static fallback's answer to one local waiter.
type grantAnswer int

const (
	answerGranted     grantAnswer = iota
	answerAskGovernor             // the governor is back: ask it instead
	answerBusy                    // the class's queue is full
	answerClosed
)

// staticShare returns the rate this node may use alone.
func (b *Budget) staticShare() int64 {
	var share int64
	if b.cfg.StaticShare != nil {
		share = b.cfg.StaticShare()
	}
	if share <= 0 {
		share = max(b.cfg.Rate/4, 1)
	}
	return min(share, b.cfg.Rate)
}

// enterFallback switches this node to its static share, starting with an
// empty bucket.
func (b *Budget) enterFallback(why error) {
	if b.fallback.Load() {
		return
	}
	share := b.staticShare()
	b.modeMu.Lock()
	if b.fallback.Load() {
		b.modeMu.Unlock()
		return
	}
	// The loop reads fallback before the rest: it must see the new share
	// and generation once it sees fallback.
	b.share.Store(share)
	b.fallbackGen.Add(1)
	b.lastProbe.Store(time.Now().UnixNano())
	b.fallback.Store(true)
	b.modeMu.Unlock()
	b.log.Warn("line budget on static share: governor unreachable", "share_bytes_per_s", share, "reason", why.Error())
	wakeLoop(b.staticWake)
}

// leaveFallback switches this node back to the governor; the fallback's
// waiters are told to ask it.
func (b *Budget) leaveFallback(why string) {
	if b.fallback.CompareAndSwap(true, false) {
		b.log.Info("line budget back on governor grants", "reason", why)
		wakeLoop(b.staticWake)
	}
}

// noteStatic remembers n bytes granted by the static share, so that the
// next governor hears of those of the last second (staticRecent).
func (b *Budget) noteStatic(n int64) {
	b.staticMu.Lock()
	defer b.staticMu.Unlock()
	now := time.Now()
	b.staticLog = append(b.staticLog, ledgerPoint{at: now, v: n})
	k := 0
	for k < len(b.staticLog) && now.Sub(b.staticLog[k].at) > time.Second {
		k++
	}
	b.staticLog = b.staticLog[k:]
}

// staticRecent returns the bytes the static share granted in the last
// second, once: the first request after leaving the static share carries
// them, and the governor counts them as just granted.
func (b *Budget) staticRecent() int64 {
	b.staticMu.Lock()
	defer b.staticMu.Unlock()
	var sum int64
	for _, p := range b.staticLog {
		if time.Since(p.at) <= time.Second {
			sum += p.v
		}
	}
	b.staticLog = b.staticLog[:0]
	return sum
}

// probeDue reports whether this Acquire, on the static share, should ask
// the governor first: one does every budgetProbeInterval.
func (b *Budget) probeDue() bool {
	now := time.Now().UnixNano()
	last := b.lastProbe.Load()
	return now-last >= int64(budgetProbeInterval) && b.lastProbe.CompareAndSwap(last, now)
}

// acquireStatic waits for n bytes of the static share. It returns false
// when the governor came back meanwhile.
func (b *Budget) acquireStatic(ctx context.Context, class Class, n int64) (bool, error) {
	w := grantWaiter{class: class, bytes: n, answer: make(chan grantAnswer, 1), done: ctx.Done()}
	for {
		select {
		case b.staticIn <- w:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-b.ctx.Done():
			return false, ErrBudgetClosed
		}
		var a grantAnswer
		select {
		case a = <-w.answer:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-b.ctx.Done():
			return false, ErrBudgetClosed
		}
		switch a {
		case answerGranted:
			b.noteStatic(n)
			return true, nil
		case answerAskGovernor:
			return false, nil
		case answerClosed:
			return false, ErrBudgetClosed
		}
		if err := b.pause(ctx, budgetBusyBackoff); err != nil {
			return false, err
		}
	}
}

// runStatic owns the static share's bucket. It grants only while the node
// is on its static share; when the node leaves it, its waiters go to the
// governor.
func (b *Budget) runStatic() {
	defer b.wg.Done()
	q := newGrantQueue(b.share.Load(), grantQueueLimit, time.Now())
	var gen uint64
	answer := func(a grantAnswer) func(grantWaiter) {
		return func(w grantWaiter) { w.answer <- a } // buffered, one answer per send
	}
	granted, askGovernor := answer(answerGranted), answer(answerAskGovernor)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if b.governorBack.Swap(false) {
			b.leaveFallback("a governor announced itself")
		}
		now := time.Now()
		if !b.fallback.Load() {
			q.drain(askGovernor)
		} else {
			if g := b.fallbackGen.Load(); g != gen {
				gen = g
				q.reset(b.share.Load(), now)
			}
			if wait := q.grant(now, nil, granted); wait > 0 {
				timer.Reset(wait)
			}
		}
		select {
		case <-b.ctx.Done():
			q.drain(answer(answerClosed))
			return
		case w := <-b.staticIn:
			if !q.add(w, time.Now()) {
				w.answer <- answerBusy
			}
		case <-b.staticWake:
		case <-timer.C:
		}
	}
}
