package transfer

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
)

// rateWindow is how far back Account.Use looks for "use now".
const rateWindow = 10 * time.Second

// Account counts one node's traffic over lines: bytes, budget wait and
// cost per direction and class, with a short history per direction for
// the current rate. The node that receives bytes over a line counts them
// (it is the one that asked for them and drew the grant), so summing the
// accounts of every node of a mesh counts each crossing once.
//
// Its figures are lakemesh's own view; tests that claim something about
// the bytes on a line count them below lakemesh, at a proxy.
type Account struct {
	topo *federation.Topology

	bytes *prometheus.CounterVec
	wait  *prometheus.CounterVec
	cost  *prometheus.CounterVec
	budg  *prometheus.GaugeVec

	mu   sync.Mutex
	uses map[useKey]*use // bounded: directions of the topology × classes
}

type useKey struct {
	dir   Direction
	class Class
}

type use struct {
	bytes int64
	wait  time.Duration
	cost  float64
	// ring of bytes per second over the last rateWindow
	ring  [int(rateWindow / time.Second)]int64
	stamp [int(rateWindow / time.Second)]int64 // unix second each slot holds
}

// NewAccount returns an account for the lines of topo, registering its
// metrics with reg (nil: not exported).
func NewAccount(topo *federation.Topology, reg prometheus.Registerer) *Account {
	a := &Account{
		topo: topo,
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lakemesh_line_bytes_total",
			Help: "Bytes this node received over a line, by direction and transfer class.",
		}, []string{"from", "to", "class"}),
		wait: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lakemesh_line_budget_wait_seconds_total",
			Help: "Time this node's transfers waited for budget grants on a line.",
		}, []string{"from", "to", "class"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lakemesh_line_cost_total",
			Help: "Cost of the bytes this node received over a line, from the line's cost_per_gb.",
		}, []string{"from", "to", "class"}),
		budg: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lakemesh_line_budget_bytes_per_second",
			Help: "The line's budget in each direction, from topology.yaml.",
		}, []string{"from", "to"}),
		uses: map[useKey]*use{},
	}
	for _, l := range topo.Lines {
		a.budg.WithLabelValues(l.Between[0], l.Between[1]).Set(float64(l.Budget))
		a.budg.WithLabelValues(l.Between[1], l.Between[0]).Set(float64(l.Budget))
	}
	if reg != nil {
		reg.MustRegister(a.bytes, a.wait, a.cost, a.budg)
	}
	return a
}

// Add records n bytes received over one direction of a line in class,
// after waiting wait for their grant, and returns what they cost.
func (a *Account) Add(dir Direction, class Class, n int64, wait time.Duration) float64 {
	var costPerGB float64
	if l, ok := a.topo.LineBetween(dir.From, dir.To); ok {
		costPerGB = l.CostPerGB
	}
	cost := float64(n) / 1e9 * costPerGB
	labels := []string{dir.From, dir.To, class.String()}
	a.bytes.WithLabelValues(labels...).Add(float64(n))
	a.wait.WithLabelValues(labels...).Add(wait.Seconds())
	a.cost.WithLabelValues(labels...).Add(cost)

	now := time.Now().Unix()
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.uses[useKey{dir, class}]
	if u == nil {
		u = &use{}
		a.uses[useKey{dir, class}] = u
	}
	u.bytes += n
	u.wait += wait
	u.cost += cost
	slot := now % int64(len(u.ring))
	if u.stamp[slot] != now {
		u.stamp[slot], u.ring[slot] = now, 0
	}
	u.ring[slot] += n
	return cost
}

// LineUse is the account as the node's Info reports it, sorted by
// direction and class.
func (a *Account) LineUse() []*nodepb.LineUse {
	now := time.Now().Unix()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*nodepb.LineUse, 0, len(a.uses))
	for k, u := range a.uses {
		var recent int64
		for i, s := range u.stamp {
			if s > now-int64(len(u.ring)) && s < now { // whole seconds only
				recent += u.ring[i]
			}
		}
		var budget int64
		if l, ok := a.topo.LineBetween(k.dir.From, k.dir.To); ok {
			budget = int64(l.Budget)
		}
		out = append(out, &nodepb.LineUse{
			From: k.dir.From, To: k.dir.To, Class: k.class.String(),
			Bytes: u.bytes, WaitNanos: u.wait.Nanoseconds(), Cost: u.cost,
			Budget: budget, Rate: float64(recent) / (rateWindow.Seconds() - 1),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		if out[i].To != out[j].To {
			return out[i].To < out[j].To
		}
		return out[i].Class < out[j].Class
	})
	return out
}
