package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	budgetTestRate  = 8 << 20  // bytes per second
	budgetTestGrant = 64 << 10 // bytes per Acquire
)

var budgetTestDir = Direction{From: "aws-use1", To: "gpu-wlcb"}

// startBudgetNATS runs the real NATS server with JetStream in this process
// on 127.0.0.1 (port 0: a free one); the caller shuts it down, or the test's
// end does.
func startBudgetNATS(t *testing.T, storeDir string, port int) *natsserver.Server {
	t.Helper()
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	ns, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "budget-test", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("embedded NATS server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatalf("embedded NATS server on port %d did not start within 10s", port)
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func connectBudgetNATS(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the server going away on purpose is not news
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// budgetNode is one "node": its own NATS connection and Budget.
type budgetNode struct {
	nc     *nats.Conn
	budget *Budget
}

// startBudgetNodes starts n nodes with Budgets on budgetTestDir, each with a
// static share of Rate/n.
func startBudgetNodes(t *testing.T, url string, n int, lease time.Duration) []*budgetNode {
	t.Helper()
	nodes := make([]*budgetNode, n)
	for i := range nodes {
		nc := connectBudgetNATS(t, url)
		b, err := NewBudget(context.Background(), BudgetConfig{
			Mesh: "test", Dir: budgetTestDir, Rate: budgetTestRate, Conn: nc, NodeID: "node-" + strconv.Itoa(i),
			StaticShare: func() int64 { return budgetTestRate / int64(n) },
			Lease:       lease,
			Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)).With("test_node", i),
		})
		if err != nil {
			t.Fatalf("NewBudget node %d: %v", i, err)
		}
		t.Cleanup(func() { b.Close() })
		nodes[i] = &budgetNode{nc: nc, budget: b}
	}
	return nodes
}

// eventually retries cond until it holds or the deadline passes.
func budgetEventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// budgetLeader waits for exactly one of nodes to lead, and returns its index.
func budgetLeader(t *testing.T, nodes []*budgetNode, skip int) int {
	t.Helper()
	leader := -1
	budgetEventually(t, "one governor elected", 15*time.Second, func() bool {
		leader = -1
		for i, n := range nodes {
			if i != skip && n.budget.Stats().Leader {
				if leader >= 0 {
					return false
				}
				leader = i
			}
		}
		return leader >= 0
	})
	return leader
}

// grantLog records when each grant was made, across nodes.
type grantLog struct {
	mu     sync.Mutex
	grants []grantAt
}

type grantAt struct {
	at    time.Time
	bytes int64
	class Class
}

func (l *grantLog) add(class Class, n int64) {
	l.mu.Lock()
	l.grants = append(l.grants, grantAt{time.Now(), n, class})
	l.mu.Unlock()
}

func (l *grantLog) sorted() []grantAt {
	l.mu.Lock()
	defer l.mu.Unlock()
	gs := slices.Clone(l.grants)
	slices.SortFunc(gs, func(a, b grantAt) int { return a.at.Compare(b.at) })
	return gs
}

// bytesBetween sums the grants of class (or of all classes, for -1) in
// [from, to).
func (l *grantLog) bytesBetween(class Class, from, to time.Time) int64 {
	var sum int64
	for _, g := range l.sorted() {
		if (class < 0 || g.class == class) && !g.at.Before(from) && g.at.Before(to) {
			sum += g.bytes
		}
	}
	return sum
}

// grantMaxWindow returns the most bytes granted in any window of length w
// (windows starting at a grant), and where it starts.
func grantMaxWindow(gs []grantAt, w time.Duration) (int64, time.Time) {
	var best, sum int64
	var at time.Time
	j := 0
	for i := range gs {
		for j < len(gs) && gs[j].at.Before(gs[i].at.Add(w)) {
			sum += gs[j].bytes
			j++
		}
		if sum > best {
			best, at = sum, gs[i].at
		}
		sum -= gs[i].bytes
	}
	return best, at
}

// pull asks b for grants of class back to back until ctx ends.
func pullGrants(t *testing.T, ctx context.Context, b *Budget, class Class, log *grantLog) {
	for ctx.Err() == nil {
		if _, err := b.Acquire(ctx, class, budgetTestGrant); err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrBudgetClosed) {
				t.Errorf("Acquire %s: %v", class, err)
			}
			return
		}
		log.add(class, budgetTestGrant)
		b.Arrived(budgetTestGrant) // the bytes are here at once
	}
}

// checkGrantWindows fails t if any one-second window of gs holds more than
// 1.05 × budgetTestRate.
func checkGrantWindows(t *testing.T, gs []grantAt) {
	t.Helper()
	most, at := grantMaxWindow(gs, time.Second)
	if float64(most) > 1.05*budgetTestRate {
		t.Errorf("%d bytes granted in the second from %s: %.3f × the budget (want <= 1.05)",
			most, at.Format("15:04:05.000"), float64(most)/budgetTestRate)
	}
	t.Logf("busiest one-second window: %.3f × the budget", float64(most)/budgetTestRate)
}

func TestBudgetClassNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Class
	}{
		{"interactive", Interactive}, {"rollout", Rollout}, {"preload", Preload},
		{"write-back", WriteBack}, {"Write-Back", WriteBack},
	} {
		got, err := ParseClass(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ParseClass(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if !strings.EqualFold(got.String(), tc.name) {
			t.Errorf("%v.String() = %q; want %q", got, got.String(), strings.ToLower(tc.name))
		}
	}
	for _, bad := range []string{"", "writeback", "bulk", "interactive "} {
		if _, err := ParseClass(bad); err == nil || !strings.Contains(err.Error(), "write-back") {
			t.Errorf("ParseClass(%q) = %v; want an error naming the classes", bad, err)
		}
	}
	if s := Class(7).String(); s != "class(7)" {
		t.Errorf("Class(7).String() = %q", s)
	}
}

func TestBudgetArguments(t *testing.T) {
	ns := startBudgetNATS(t, t.TempDir(), 0)
	nc := connectBudgetNATS(t, ns.ClientURL())
	if _, err := NewBudget(context.Background(), BudgetConfig{Mesh: "test", Dir: budgetTestDir, Conn: nc, NodeID: "n"}); err == nil {
		t.Error("NewBudget without a rate: no error")
	}
	if _, err := NewBudget(context.Background(), BudgetConfig{Mesh: "test", Dir: Direction{"a", "a"}, Rate: 1, Conn: nc, NodeID: "n"}); err == nil {
		t.Error("NewBudget from a region to itself: no error")
	}
	b, err := NewBudget(context.Background(), BudgetConfig{Mesh: "test", Dir: budgetTestDir, Rate: budgetTestRate, Conn: nc, NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Acquire(context.Background(), Interactive, MaxGrant+1)
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(MaxGrant+1)) || !strings.Contains(err.Error(), strconv.Itoa(MaxGrant)) {
		t.Errorf("Acquire(MaxGrant+1) = %v; want an error naming %d and %d", err, MaxGrant+1, MaxGrant)
	}
	if _, err := b.Acquire(context.Background(), Class(9), 1); err == nil {
		t.Error("Acquire of class 9: no error")
	}
	if _, err := b.Acquire(context.Background(), Interactive, 1024); err != nil {
		t.Errorf("Acquire(1024): %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(context.Background(), Interactive, 1024); !errors.Is(err, ErrBudgetClosed) {
		t.Errorf("Acquire after Close = %v; want ErrBudgetClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestBudgetQueueOrder checks the grant queue alone, on a fake clock:
// strict class order, FIFO within a class (a requeued ticket keeps its
// place), bounded queues, an empty bucket at the start.
func TestBudgetQueueOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := newGrantQueue(1000, 3, t0) // 1000 bytes/s
	var served []string
	serve := func(w grantWaiter) { served = append(served, w.reply) }
	now := t0
	add := func(c Class, name string, ticket uint64) {
		if !q.add(grantWaiter{class: c, bytes: 100, ticket: ticket, reply: name}, now) {
			t.Fatalf("add %s: queue full", name)
		}
	}
	add(WriteBack, "w1", 0)
	add(Preload, "p1", 0)
	add(WriteBack, "w2", 0)
	add(Interactive, "i1", 0)
	add(WriteBack, "w0", 1) // requeued with the first ticket: before w1
	if q.add(grantWaiter{class: WriteBack, bytes: 1, reply: "w3"}, t0) {
		t.Error("a fourth write-back waiter fit a queue of 3")
	}
	if wait := q.grant(t0, nil, serve); len(served) != 0 || wait != 100*time.Millisecond {
		t.Fatalf("at start: served %v, next in %v; want none (empty bucket), next in 100ms", served, wait)
	}
	// The bucket holds no more than the head needs: however long the
	// gap, one grant of 100 bytes per 100ms.
	for i := 1; i <= 5; i++ {
		q.grant(t0.Add(time.Duration(i)*250*time.Millisecond), nil, serve)
		if len(served) != i {
			t.Fatalf("after %d × 250ms: served %v; want %d", i, served, i)
		}
	}
	want := []string{"i1", "p1", "w0", "w1", "w2"}
	if !slices.Equal(served, want) {
		t.Errorf("served %v; want %v", served, want)
	}
	// Idle for a long time, the bucket keeps only its small burst.
	served = nil
	now = t0.Add(time.Hour)
	q.grant(now, nil, serve)
	for i := range 3 {
		add(Rollout, fmt.Sprint("r", i), 0)
	}
	if q.grant(now, nil, serve); len(served) != 0 {
		t.Errorf("after idling, served %v at once; want none (burst of 20 bytes < 100)", served)
	}
}

// TestBudgetSharedRate: three nodes pull as fast as they can; together
// they stay within the budget in every one-second window and use at
// least 90% of it.
func TestBudgetSharedRate(t *testing.T) {
	ns := startBudgetNATS(t, t.TempDir(), 0)
	nodes := startBudgetNodes(t, ns.ClientURL(), 3, 0)
	budgetLeader(t, nodes, -1)

	var log grantLog
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() { pullGrants(t, ctx, n.budget, Preload, &log) })
		}
	}
	time.Sleep(4 * time.Second)
	cancel()
	wg.Wait()
	elapsed := time.Since(start)

	gs := log.sorted()
	checkGrantWindows(t, gs)
	total := log.bytesBetween(-1, start, start.Add(elapsed))
	if want := 0.9 * budgetTestRate * elapsed.Seconds(); float64(total) < want {
		t.Errorf("%d bytes granted in %v: %.2f × the budget (want >= 0.9)", total, elapsed, float64(total)/budgetTestRate/elapsed.Seconds())
	}
	for i, n := range nodes {
		st := n.budget.Stats()
		if st.StaticGrants != 0 || st.GovernorGrants == 0 {
			t.Errorf("node %d: %d governor and %d static grants; want all from the governor", i, st.GovernorGrants, st.StaticGrants)
		}
	}
	t.Logf("%d grants, %.1f MiB in %v (%.3f × budget)", len(gs), float64(total)/(1<<20), elapsed.Round(time.Millisecond), float64(total)/budgetTestRate/elapsed.Seconds())

	// The governor told every node that three were pulling; once the
	// others have been quiet for pullerWindow, a node pulling alone hears
	// it is alone (it then holds the line's whole window of granted bytes).
	for i, n := range nodes {
		if got := n.budget.Pullers(); got != 3 {
			t.Errorf("node %d: Pullers() = %d while three nodes pulled, want 3", i, got)
		}
	}
	time.Sleep(pullerWindow + 100*time.Millisecond)
	if _, err := nodes[0].budget.Acquire(context.Background(), Preload, budgetTestGrant); err != nil {
		t.Fatal(err)
	}
	nodes[0].budget.Arrived(budgetTestGrant)
	if got := nodes[0].budget.Pullers(); got != 1 {
		t.Errorf("node 0 pulling alone: Pullers() = %d, want 1", got)
	}
}

// TestBudgetPriority: Interactive asks for a steady quarter of the budget
// while WriteBack pulls flat out on every node: Interactive gets what it
// asks with little wait, WriteBack the rest, the total stays near the
// budget.
func TestBudgetPriority(t *testing.T) {
	ns := startBudgetNATS(t, t.TempDir(), 0)
	nodes := startBudgetNodes(t, ns.ClientURL(), 3, 0)
	budgetLeader(t, nodes, -1)

	var log grantLog
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() { pullGrants(t, ctx, n.budget, WriteBack, &log) })
		}
	}
	const interactiveShare = 0.25
	interval := time.Duration(float64(time.Second) * budgetTestGrant / (interactiveShare * budgetTestRate))
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := nodes[1].budget.Acquire(ctx, Interactive, budgetTestGrant); err != nil {
				if ctx.Err() == nil {
					t.Errorf("Acquire interactive: %v", err)
				}
				return
			}
			log.add(Interactive, budgetTestGrant)
			nodes[1].budget.Arrived(budgetTestGrant)
		}
	})
	time.Sleep(4 * time.Second)
	cancel()
	wg.Wait()
	elapsed := time.Since(start)

	checkGrantWindows(t, log.sorted())
	interactive := log.bytesBetween(Interactive, start, start.Add(elapsed))
	writeBack := log.bytesBetween(WriteBack, start, start.Add(elapsed))
	asked := interactiveShare * budgetTestRate * elapsed.Seconds()
	if float64(interactive) < 0.9*asked {
		t.Errorf("interactive got %d of %.0f bytes asked (%.2f); want >= 0.9", interactive, asked, float64(interactive)/asked)
	}
	st := nodes[1].budget.Stats().Classes[Interactive]
	if mean := st.Waited / time.Duration(max(st.Grants, 1)); mean > 50*time.Millisecond {
		t.Errorf("interactive grants waited %v on average; want < 50ms (they should pass write-back)", mean)
	}
	total := float64(interactive + writeBack)
	if total < 0.9*budgetTestRate*elapsed.Seconds() {
		t.Errorf("total %.0f bytes in %v: %.2f × the budget (want >= 0.9)", total, elapsed, total/budgetTestRate/elapsed.Seconds())
	}
	if float64(writeBack) < 0.6*budgetTestRate*elapsed.Seconds() {
		t.Errorf("write-back got %d bytes: %.2f × the budget; want the rest (~0.75)", writeBack, float64(writeBack)/budgetTestRate/elapsed.Seconds())
	}
	t.Logf("interactive %.2f, write-back %.2f × budget; interactive mean wait %v",
		float64(interactive)/budgetTestRate/elapsed.Seconds(), float64(writeBack)/budgetTestRate/elapsed.Seconds(),
		st.Waited/time.Duration(max(st.Grants, 1)))
}
