package region

import (
	"context"
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/lakemesh/lakemesh/internal/testenv"
)

// The service meta Register writes reads back as the same member, socket
// and host included; members registered without them (older nodes) and
// meta that cannot be dialled safely read back without a socket.
func TestMemberMetaRoundTrip(t *testing.T) {
	entry := func(id string, meta map[string]string) *api.ServiceEntry {
		return &api.ServiceEntry{Service: &api.AgentService{ID: id, Meta: meta}}
	}
	withSocket := Member{ID: "a", Region: "r1", Addr: "127.0.0.1:7070", Capacity: 10 << 30, Host: "machine-id:abc", Socket: "/var/cache/lakemesh/node.sock"}
	plain := Member{ID: "b", Region: "r1", Addr: "127.0.0.1:7071", Capacity: 1}
	for _, tc := range []struct {
		name  string
		entry *api.ServiceEntry
		want  Member
	}{
		{"with socket", entry("a", memberMeta(withSocket)), withSocket},
		{"without socket", entry("b", memberMeta(plain)), plain},
		{"older node's meta", entry("b", map[string]string{"region": "r1", "grpc_addr": "127.0.0.1:7071", "capacity": "1"}), plain},
		{"socket without host", entry("b", map[string]string{"region": "r1", "grpc_addr": "127.0.0.1:7071", "capacity": "1", "socket": "/x.sock"}), plain},
		{"relative socket", entry("b", map[string]string{"region": "r1", "grpc_addr": "127.0.0.1:7071", "capacity": "1", "socket": "x.sock", "host": "h"}), plain},
	} {
		got, err := memberFromEntry(tc.entry, "r1")
		if err != nil || got != tc.want {
			t.Errorf("%s: memberFromEntry = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if meta := memberMeta(plain); meta[metaSocket] != "" || meta[metaHost] != "" {
		t.Errorf("meta of a member without a socket = %v, want no socket or host", meta)
	}
}

// A member registered with a socket is seen with it by another process's
// membership, through a real Consul agent.
func TestConsulCarriesSocket(t *testing.T) {
	agent := testenv.Consul(t)
	node := startGRPCNode(t)
	reg := newTestConsul(t, agent, "r1", "registrar")
	self := Member{ID: "n1", Region: "r1", Addr: node.addr, Capacity: 1 << 30, Host: LocalHost(), Socket: "/run/lakemesh/n1.sock"}
	ctx, cancel := context.WithTimeout(context.Background(), consulDeadline)
	defer cancel()
	if err := reg.Register(ctx, self); err != nil {
		t.Fatalf("Register: %v", err)
	}
	watcher := newTestConsul(t, agent, "r1", "watcher")
	waitMembers(t, watcher, "n1 is a member", hasID("n1"))
	if got := watcher.Members(); !slices.Equal(got, []Member{self}) {
		t.Fatalf("members = %+v, want %+v", got, self)
	}
}

func TestRegisterRejectsSocketWithoutHost(t *testing.T) {
	agent := testenv.Consul(t)
	c := newTestConsul(t, agent, "r1", "registrar")
	for _, m := range []Member{
		{ID: "x", Addr: "127.0.0.1:1", Socket: "/x.sock"},
		{ID: "x", Addr: "127.0.0.1:1", Host: "h"},
		{ID: "x", Addr: "127.0.0.1:1", Host: "h", Socket: "x.sock"},
	} {
		if err := c.Register(context.Background(), m); err == nil {
			t.Errorf("Register(%+v) succeeded, want an error", m)
		}
	}
}

func TestLocalHostIsStable(t *testing.T) {
	if h := LocalHost(); h == "" || h != readLocalHost() {
		t.Fatalf("LocalHost() = %q, readLocalHost() = %q; want one non-empty identity", h, readLocalHost())
	}
}
