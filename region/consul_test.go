package region

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lakemesh/lakemesh/internal/testenv"
)

// consulDeadline bounds every eventually-consistent assertion against
// Consul: the gRPC check runs every second, so a state change shows within
// a few seconds; the margin is for a loaded CI machine.
const consulDeadline = 30 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// grpcNode is a stand-in cache node: a real gRPC server on loopback that
// serves grpc.health.v1, which is all Consul's check looks at.
type grpcNode struct {
	addr   string
	server *grpc.Server
}

func startGRPCNode(t *testing.T) *grpcNode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer()) // "" is SERVING
	served := make(chan struct{})
	go func() { // owned by the cleanup, which stops it and waits
		defer close(served)
		s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-served
	})
	return &grpcNode{addr: l.Addr().String(), server: s}
}

func newTestConsul(t *testing.T, agent *testenv.ConsulAgent, region, name string) *Consul {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), consulDeadline)
	defer cancel()
	c, err := NewConsul(ctx, ConsulConfig{
		Address:    agent.HTTPAddr,
		Datacenter: agent.Datacenter,
		Region:     region,
		Logger:     testLogger(t).With("membership", name),
	})
	if err != nil {
		t.Fatalf("NewConsul: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close %s membership: %v", region, err)
		}
	})
	return c
}

// registerNode starts a gRPC node and registers it through a membership of
// its own, as a cache node process would.
func registerNode(t *testing.T, agent *testenv.ConsulAgent, region, id string) (*Consul, *grpcNode, Member) {
	t.Helper()
	node := startGRPCNode(t)
	c := newTestConsul(t, agent, region, id)
	self := Member{ID: id, Region: region, Addr: node.addr, Capacity: 64 << 30}
	ctx, cancel := context.WithTimeout(context.Background(), consulDeadline)
	defer cancel()
	if err := c.Register(ctx, self); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c, node, self
}

func waitMembers(t *testing.T, m interface {
	WaitFor(context.Context, func([]Member) bool) error
}, what string, pred func([]Member) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), consulDeadline)
	defer cancel()
	if err := m.WaitFor(ctx, pred); err != nil {
		t.Fatalf("wait until %s: %v", what, err)
	}
}

func hasID(id string) func([]Member) bool {
	return func(ms []Member) bool {
		return slices.ContainsFunc(ms, func(m Member) bool { return m.ID == id })
	}
}

func lacksID(id string) func([]Member) bool {
	has := hasID(id)
	return func(ms []Member) bool { return !has(ms) }
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestConsulMembership(t *testing.T) {
	agent := testenv.Consul(t, testenv.WithDatacenter("region-test"))

	// A client-only watcher: it never registers, it only follows.
	watcher := newTestConsul(t, agent, "r1", "watcher")
	if got := watcher.Members(); len(got) != 0 {
		t.Fatalf("fresh agent has members %v", got)
	}
	changed := watcher.Changed()

	_, _, m1 := registerNode(t, agent, "r1", "node-1")
	_, node2, m2 := registerNode(t, agent, "r1", "node-2")
	reg3, _, m3 := registerNode(t, agent, "r1", "node-3")
	want := []Member{m1, m2, m3}

	waitMembers(t, watcher, "all three nodes are healthy members", func(ms []Member) bool {
		return slices.Equal(ms, want)
	})
	if !closed(changed) {
		t.Fatal("Changed did not fire when members joined")
	}
	// Every membership of the region sees the same set, the registrars too.
	waitMembers(t, reg3, "node-3's own membership sees all three", func(ms []Member) bool {
		return slices.Equal(ms, want)
	})

	t.Run("failed health check removes a member", func(t *testing.T) {
		changed := watcher.Changed()
		node2.server.Stop()
		waitMembers(t, watcher, "node-2 (gRPC stopped) leaves", lacksID("node-2"))
		if !closed(changed) {
			t.Fatal("Changed did not fire when node-2 left")
		}
		if got := watcher.Members(); !slices.Equal(got, []Member{m1, m3}) {
			t.Fatalf("members after node-2 failed = %v, want node-1, node-3", got)
		}
	})

	t.Run("Close deregisters", func(t *testing.T) {
		// node-3's gRPC server keeps serving: only deregistration can
		// remove it.
		if err := reg3.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		waitMembers(t, watcher, "node-3 (closed) leaves", lacksID("node-3"))
		client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
		if err != nil {
			t.Fatal(err)
		}
		services, err := client.Agent().Services()
		if err != nil {
			t.Fatalf("list agent services: %v", err)
		}
		if _, ok := services["node-3"]; ok {
			t.Fatal("node-3 is still registered with the agent after Close")
		}
		if _, ok := services["node-1"]; !ok {
			t.Fatal("node-1 was deregistered by another node's Close")
		}
		if err := reg3.Register(context.Background(), m3); !errors.Is(err, ErrClosed) {
			t.Fatalf("Register after Close = %v, want ErrClosed", err)
		}
		if err := reg3.WaitFor(context.Background(), func([]Member) bool { return false }); !errors.Is(err, ErrClosed) {
			t.Fatalf("WaitFor after Close = %v, want ErrClosed", err)
		}
	})

}

func TestConsulRegionsAreSeparate(t *testing.T) {
	agent := testenv.Consul(t)
	r1 := newTestConsul(t, agent, "r1", "r1-watcher")
	r2 := newTestConsul(t, agent, "r2", "r2-watcher")

	registerNode(t, agent, "r2", "b-1")
	waitMembers(t, r2, "b-1 joins r2", hasID("b-1"))

	// Once r1 has seen a later change of the catalog, it has read a state
	// that holds b-1 too; b-1 must not be in it.
	registerNode(t, agent, "r1", "a-1")
	waitMembers(t, r1, "a-1 joins r1", hasID("a-1"))
	if got := r1.Members(); len(got) != 1 || got[0].ID != "a-1" {
		t.Fatalf("r1 members = %v, want only a-1", got)
	}
	waitMembers(t, r2, "r2 settles", hasID("b-1"))
	if got := r2.Members(); len(got) != 1 || got[0].ID != "b-1" {
		t.Fatalf("r2 members = %v, want only b-1", got)
	}
}

// TestConsulSkipsBadMeta registers, behind lakemesh's back, instances whose
// meta does not describe a member; the watch must skip them and keep the
// good ones.
func TestConsulSkipsBadMeta(t *testing.T) {
	agent := testenv.Consul(t)
	watcher := newTestConsul(t, agent, "r1", "watcher")
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	// No check: Consul counts a service without checks as passing.
	for id, meta := range map[string]map[string]string{
		"bad-capacity": {"region": "r1", "grpc_addr": "127.0.0.1:7000", "capacity": "lots"},
		"bad-addr":     {"region": "r1", "grpc_addr": "0.0.0.0:7000"},
		"good":         {"region": "r1", "grpc_addr": "127.0.0.1:7001", "capacity": "10"},
	} {
		reg := &api.AgentServiceRegistration{ID: id, Name: DefaultService, Meta: meta}
		if err := client.Agent().ServiceRegister(reg); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	want := []Member{{ID: "good", Region: "r1", Addr: "127.0.0.1:7001", Capacity: 10}}
	waitMembers(t, watcher, "the good instance is a member", hasID("good"))
	if got := watcher.Members(); !slices.Equal(got, want) {
		t.Fatalf("members = %v, want %v", got, want)
	}
}

func TestConsulRegisterRejectsBadMember(t *testing.T) {
	agent := testenv.Consul(t)
	c := newTestConsul(t, agent, "r1", "registrar")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		m    Member
		want string
	}{
		{"no id", Member{Addr: "127.0.0.1:1"}, "id is empty"},
		{"other region", Member{ID: "x", Region: "r2", Addr: "127.0.0.1:1"}, `region "r2"`},
		{"no host", Member{ID: "x", Addr: ":7000"}, "no host"},
		{"unspecified host", Member{ID: "x", Addr: "0.0.0.0:7000"}, "unspecified"},
		{"no port", Member{ID: "x", Addr: "127.0.0.1"}, "127.0.0.1"},
		{"negative capacity", Member{ID: "x", Addr: "127.0.0.1:1", Capacity: -1}, "negative capacity"},
	} {
		err := c.Register(ctx, tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Register(%+v) = %v, want error containing %q", tc.name, tc.m, err, tc.want)
		}
	}
}

func TestNewConsulUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := NewConsul(ctx, ConsulConfig{Address: addr, Region: "r1", Logger: testLogger(t)})
	if err == nil {
		c.Close()
		t.Fatal("NewConsul succeeded with no agent")
	}
	if !strings.Contains(err.Error(), addr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %q does not name %s and the deadline", err, addr)
	}
}

// TestFollowConsulUnreachableAtFirst: a region Consul cannot answer for
// when the follower starts (another region's datacenter away, here an
// agent not reachable yet) is followed all the same: no members and Ready
// open until Consul answers, then its members, with no restart.
func TestFollowConsulUnreachableAtFirst(t *testing.T) {
	agent := testenv.Consul(t, testenv.WithDatacenter("region-test"))
	_, _, m1 := registerNode(t, agent, "r1", "node-1")
	addr := testenv.FreeAddr(t) // the agent answers here once a proxy listens
	c, err := FollowConsul(ConsulConfig{Address: addr, Region: "r1", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(time.Second)
	if got := c.Members(); len(got) != 0 || closed(c.Ready()) {
		t.Fatalf("with no agent reachable: members %v, ready %v", got, closed(c.Ready()))
	}
	if err := c.NotReady(context.DeadlineExceeded); !strings.Contains(err.Error(), addr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NotReady: %v; want the agent's address and the reason", err)
	}
	testenv.ProxyAt(t, addr, agent.HTTPAddr)
	waitMembers(t, c, "the region's member, once its agent answers", func(ms []Member) bool {
		return slices.Equal(ms, []Member{m1})
	})
	if !closed(c.Ready()) {
		t.Error("members came but Ready is still open")
	}
}

func TestNewConsulNeedsRegion(t *testing.T) {
	if _, err := NewConsul(context.Background(), ConsulConfig{Address: "127.0.0.1:1"}); err == nil {
		t.Fatal("NewConsul without a region succeeded")
	}
}

// TestConsulCloseStopsGoroutines checks that a membership leaves nothing
// running behind: the watch and the HTTP client's connections end with
// Close.
func TestConsulCloseStopsGoroutines(t *testing.T) {
	agent := testenv.Consul(t)
	before := runtime.NumGoroutine()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), consulDeadline)
		c, err := NewConsul(ctx, ConsulConfig{Address: agent.HTTPAddr, Region: "r1"})
		cancel()
		if err != nil {
			t.Fatalf("NewConsul %d: %v", i, err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("Close %d: %v", i, err)
		}
	}
	// Connection goroutines end asynchronously: retry until the deadline.
	deadline := time.After(consulDeadline)
	retry := time.NewTicker(10 * time.Millisecond)
	defer retry.Stop()
	for runtime.NumGoroutine() > before {
		select {
		case <-deadline:
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		case <-retry.C:
		}
	}
}
