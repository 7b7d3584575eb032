package transfer

import (
	"fmt"
	"testing"
	"time"
)

// TestLedgerBoundsArrivalsWhenSendersStall replays a governor granting
// at the budget's rate to two nodes whose senders stall now and then and
// then send everything they owe at once: the bytes arriving in any one
// second stay under the cap (without the ledger, 1.3 × the budget), and
// the line carries nearly the budget while the senders work.
func TestLedgerBoundsArrivalsWhenSendersStall(t *testing.T) {
	for _, stall := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("stall %v of every 1.3s", stall), func(t *testing.T) { replayLedger(t, stall) })
	}
}

func replayLedger(t *testing.T, stall time.Duration) {
	const (
		rate  = 1 << 20
		piece = rate / 128
		step  = time.Millisecond
		run   = 20 * time.Second
	)
	t0 := time.Unix(1000, 0)
	l := newLedger(rate)
	type owed struct {
		node string
		at   time.Time // when it arrives
	}
	var onWay []owed
	arrived := map[string]int64{}
	var arrivals []grantAt // reuses the budget tests' window helper
	bucket := 0.0          // the governor's token bucket at the budget's rate
	nodes := []string{"n1", "n2"}
	for _, n := range nodes {
		l.heard(n, 0, t0)
	}
	for now := t0; now.Before(t0.Add(run)); now = now.Add(step) {
		el := now.Sub(t0)
		// Senders stall for 300 ms out of every 1.3 s, then deliver what
		// they owe at once; otherwise a piece takes 20 ms.
		stalled := el%(1300*time.Millisecond) < stall
		keep := onWay[:0]
		for _, o := range onWay {
			if !stalled && !o.at.After(now) {
				arrived[o.node] += piece
				l.heard(o.node, arrived[o.node], now)
				arrivals = append(arrivals, grantAt{at: now, bytes: piece})
				continue
			}
			keep = append(keep, o)
		}
		onWay = keep
		bucket = min(bucket+rate*step.Seconds(), rate*grantBurstTime.Seconds()+piece)
		for i := 0; bucket >= piece; i++ {
			if ok, _ := l.allow(piece, now); !ok {
				break
			}
			n := nodes[i%2]
			l.grant(n, piece, now)
			bucket -= piece
			onWay = append(onWay, owed{node: n, at: now.Add(20 * time.Millisecond)})
		}
		if now.Sub(t0)%(125*time.Millisecond) == 0 {
			l.forget(now)
		}
	}
	most, at := grantMaxWindow(arrivals, time.Second)
	if limit := l.cap; most > limit {
		t.Errorf("%d bytes arrived in the second from %v: %.3f × the budget, want <= %.2f", most, at.Sub(t0), float64(most)/rate, 1+arrivalSlack)
	}
	var total int64
	for _, a := range arrivals {
		total += a.bytes
	}
	// While the senders work, the line carries nearly the budget (no
	// more can arrive in the second after a stall than in any other).
	working := 1 - stall.Seconds()/1.3
	if share := float64(total) / rate / run.Seconds(); share < 0.95*working {
		t.Errorf("%.3f × the budget arrived on average, want >= %.2f (0.95 of the time the senders work)", share, 0.95*working)
	}
	t.Logf("busiest second %.3f × the budget, average %.3f", float64(most)/rate, float64(total)/rate/run.Seconds())
}

// TestLedgerForgetsUnreported: bytes granted and never reported arrived
// stop holding the line after ledgerForget, so a node that died (or does
// not report) cannot stall it for good.
func TestLedgerForgetsUnreported(t *testing.T) {
	const rate = 1 << 20
	t0 := time.Unix(1000, 0)
	l := newLedger(rate)
	l.heard("gone", 0, t0)
	l.grant("gone", rate, t0) // a second of budget, never reported
	if ok, _ := l.allow(64<<10, t0.Add(1100*time.Millisecond)); ok {
		t.Fatal("granted while a second of unreported bytes is on its way")
	}
	l.forget(t0.Add(ledgerForget + time.Millisecond))
	if ok, wait := l.allow(64<<10, t0.Add(ledgerForget+1100*time.Millisecond)); !ok {
		t.Fatalf("still refused %v after the node went silent for %v", wait, ledgerForget)
	}
}
