package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestBudgetGovernorFailover: the governor goes away while every node
// pulls flat out, by Close (it hands over at once) or by losing its NATS
// connection without Close (its lease lapses); another node governs, the
// grants go on, and no one-second window exceeds the budget.
func TestBudgetGovernorFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(*budgetNode)
	}{
		{"close", func(n *budgetNode) { n.budget.Close() }},
		{"connection-lost", func(n *budgetNode) { n.nc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const lease = 2 * time.Second
			ns := startBudgetNATS(t, t.TempDir(), 0)
			nodes := startBudgetNodes(t, ns.ClientURL(), 3, lease)
			old := budgetLeader(t, nodes, -1)

			var log grantLog
			var wg sync.WaitGroup
			stops := make([]context.CancelFunc, len(nodes))
			start := time.Now()
			for i, n := range nodes {
				ctx, cancel := context.WithCancel(context.Background())
				stops[i] = cancel
				for range 2 {
					wg.Go(func() { pullGrants(t, ctx, n.budget, Preload, &log) })
				}
			}
			defer func() {
				for _, stop := range stops {
					stop()
				}
				wg.Wait()
			}()
			time.Sleep(1500 * time.Millisecond)

			// The governor's process dies: its pulls end with it.
			stops[old]()
			killed := time.Now()
			tc.kill(nodes[old])
			next := budgetLeader(t, nodes, old)
			elected := time.Now()
			before := nodes[next].budget.Stats().GovernorGrants
			time.Sleep(1500 * time.Millisecond)
			for _, stop := range stops {
				stop()
			}
			wg.Wait()
			end := time.Now()

			checkGrantWindows(t, log.sorted())
			if after := nodes[next].budget.Stats().GovernorGrants; after <= before {
				t.Errorf("node %d governs but its governor grants did not grow (%d then %d)", next, before, after)
			}
			after := log.bytesBetween(-1, elected, end)
			if rate := float64(after) / end.Sub(elected).Seconds(); rate < 0.8*budgetTestRate {
				t.Errorf("after the new election: %.2f × the budget; want >= 0.8", rate/budgetTestRate)
			}
			t.Logf("governor %d gone at +%v, node %d elected %v later; %.2f × budget before, %.2f × after",
				old, killed.Sub(start).Round(time.Millisecond), next, elected.Sub(killed).Round(time.Millisecond),
				float64(log.bytesBetween(-1, start, killed))/budgetTestRate/killed.Sub(start).Seconds(),
				float64(after)/budgetTestRate/end.Sub(elected).Seconds())
		})
	}
}

// TestBudgetNATSDown: with the NATS server gone, Acquire keeps working at
// each node's static share and no faster; when the server is back on the
// same port, the nodes elect a governor and take its grants again.
func TestBudgetNATSDown(t *testing.T) {
	dir := t.TempDir()
	ns := startBudgetNATS(t, dir, 0)
	port := ns.Addr().(*net.TCPAddr).Port
	nodes := startBudgetNodes(t, ns.ClientURL(), 3, 0)
	budgetLeader(t, nodes, -1)

	var log grantLog
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() { pullGrants(t, ctx, n.budget, Preload, &log) })
		}
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second)

	ns.Shutdown()
	ns.WaitForShutdown()
	budgetEventually(t, "every node on its static share", 10*time.Second, func() bool {
		for _, n := range nodes {
			if !n.budget.Stats().Fallback {
				return false
			}
		}
		return true
	})
	// Measure each node's static rate over two seconds.
	const share = budgetTestRate / 3
	first := make([]int64, len(nodes))
	for i, n := range nodes {
		first[i] = n.budget.Stats().StaticBytes
	}
	from := time.Now()
	time.Sleep(2 * time.Second)
	for i, n := range nodes {
		st := n.budget.Stats()
		rate := float64(st.StaticBytes-first[i]) / time.Since(from).Seconds()
		if rate > 1.1*share || rate < 0.5*share {
			t.Errorf("node %d on its static share: %.0f bytes/s; want at most 1.1 × (and at least half) its share %d", i, rate, share)
		}
		if !st.Fallback {
			t.Errorf("node %d left its static share with NATS down", i)
		}
		t.Logf("node %d with NATS down: %.3f × its static share", i, rate/share)
	}

	// The server comes back on the same port.
	startBudgetNATS(t, dir, port)
	governed := make([]int64, len(nodes))
	for i, n := range nodes {
		governed[i] = n.budget.Stats().GovernorGrants
	}
	budgetEventually(t, "every node back on governor grants", 20*time.Second, func() bool {
		for i, n := range nodes {
			if st := n.budget.Stats(); st.Fallback || st.GovernorGrants <= governed[i] {
				return false
			}
		}
		return true
	})
	budgetLeader(t, nodes, -1)
}

// TestBudgetGovernorCallsStaticNodesBack: a node that comes back from
// its static share says what the share granted; the governor then calls
// every node still on its static share back at once (news on the
// direction's subject, which wakes them), instead of letting their shares
// grant uncounted until their own probes.
func TestBudgetGovernorCallsStaticNodesBack(t *testing.T) {
	ns := startBudgetNATS(t, t.TempDir(), 0)
	nodes := startBudgetNodes(t, ns.ClientURL(), 2, 0)
	leader := budgetLeader(t, nodes, -1)
	b := nodes[leader].budget

	nc := connectBudgetNATS(t, ns.ClientURL())
	news := make(chan governorNews, 8)
	sub, err := nc.Subscribe(b.news, func(m *nats.Msg) {
		var n governorNews
		if json.Unmarshal(m.Data, &n) == nil {
			news <- n
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	ask := func(r grantRequest) {
		t.Helper()
		data, _ := json.Marshal(r)
		if _, err := nc.Request(b.grants, data, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// The election's own announcement may still be on its way: let it
	// pass before the ordinary request.
	drainNews(news)
	ask(grantRequest{Class: Preload, Bytes: 64 << 10, Node: "node-x"})
	select {
	case n := <-news:
		t.Fatalf("news %+v after an ordinary request", n)
	case <-time.After(200 * time.Millisecond):
	}
	ask(grantRequest{Class: Preload, Bytes: 64 << 10, Node: "node-x", Static: 1 << 20})
	select {
	case n := <-news:
		if n.Resigned || n.Node != nodes[leader].budget.cfg.NodeID {
			t.Fatalf("news %+v, want the governor %s calling back", n, nodes[leader].budget.cfg.NodeID)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a node came back from its static share and the governor did not call the others back")
	}

	// A node on its static share that hears it leaves the share at once.
	// The call-back above reaches the other node too: let it pass first,
	// or it takes the node off the share it is about to enter.
	drainNews(news)
	other := nodes[1-leader].budget
	other.enterFallback(errors.New("test: away"))
	other.lastProbe.Store(time.Now().Add(time.Hour).UnixNano()) // no probe of its own
	time.Sleep(callBackEvery + 50*time.Millisecond)
	if !other.Stats().Fallback {
		t.Fatal("the node left its static share on its own")
	}
	ask(grantRequest{Class: Preload, Bytes: 64 << 10, Node: "node-y", Static: 1 << 20})
	budgetEventually(t, "the node on its static share called back", 2*time.Second, func() bool { return !other.Stats().Fallback })
}

// drainNews discards news until none has come for 300 ms.
func drainNews[T any](news <-chan T) {
	for {
		select {
		case <-news:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// TestBudgetGovernorCloseAnswersEveryRequest: a governor that closes
// answers every request it has received, those still waiting in its
// subscription included, so that no node waits grantRequestTimeout for an
// answer that never comes (a stall of 1.5 s at every handover, when the
// requests then in flight were dropped).
func TestBudgetGovernorCloseAnswersEveryRequest(t *testing.T) {
	ns := startBudgetNATS(t, t.TempDir(), 0)
	nodes := startBudgetNodes(t, ns.ClientURL(), 1, 0)
	budgetLeader(t, nodes, -1)
	b := nodes[0].budget

	nc := connectBudgetNATS(t, ns.ClientURL())
	inbox := nats.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := replies.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	// Far more than the budget grants in a second: most wait in the
	// governor's queue, and the last ones are still in its subscription
	// when it closes.
	const asked = 200
	data, _ := json.Marshal(grantRequest{Class: Preload, Bytes: MaxGrant, Node: "node-x"})
	for range asked {
		if err := nc.PublishRequest(b.grants, inbox, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	answered := 0
	deadline := time.Now().Add(500 * time.Millisecond) // well under grantRequestTimeout
	for answered < asked {
		m, err := replies.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var r grantReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("answer %q: %v", m.Data, err)
		}
		answered++
	}
	if answered != asked {
		t.Fatalf("%d of %d requests answered by the closing governor; the others would wait %v", answered, asked, grantRequestTimeout)
	}
}
