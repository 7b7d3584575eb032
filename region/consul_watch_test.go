package region

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestMemberFromEntry(t *testing.T) {
	entry := func(id string, meta map[string]string, addr string, port int) *api.ServiceEntry {
		return &api.ServiceEntry{
			Node:    &api.Node{Node: "agent-1", Address: "10.1.1.1"},
			Service: &api.AgentService{ID: id, Service: DefaultService, Meta: meta, Address: addr, Port: port},
		}
	}
	for _, tc := range []struct {
		name    string
		e       *api.ServiceEntry
		want    Member
		wantErr string
	}{
		{"full meta", entry("n1", map[string]string{"region": "r1", "grpc_addr": "10.0.0.1:7000", "capacity": "1024"}, "", 0),
			Member{ID: "n1", Region: "r1", Addr: "10.0.0.1:7000", Capacity: 1024}, ""},
		{"address from service", entry("n1", map[string]string{"region": "r1"}, "10.0.0.2", 7000),
			Member{ID: "n1", Region: "r1", Addr: "10.0.0.2:7000"}, ""},
		{"address from node", entry("n1", map[string]string{"region": "r1"}, "", 7000),
			Member{ID: "n1", Region: "r1", Addr: "10.1.1.1:7000"}, ""},
		{"other region", entry("n1", map[string]string{"region": "r2", "grpc_addr": "10.0.0.1:7000"}, "", 0),
			Member{}, `region="r2"`},
		{"no region", entry("n1", map[string]string{"grpc_addr": "10.0.0.1:7000"}, "", 0),
			Member{}, `region=""`},
		{"no address", entry("n1", map[string]string{"region": "r1"}, "", 0),
			Member{}, "grpc_addr"},
		{"bad capacity", entry("n1", map[string]string{"region": "r1", "grpc_addr": "10.0.0.1:7000", "capacity": "-5"}, "", 0),
			Member{}, "capacity"},
		{"no service", &api.ServiceEntry{}, Member{}, "without a service"},
	} {
		got, err := memberFromEntry(tc.e, "r1")
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
		case got != tc.want:
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestParseEntriesSortsAndDropsDuplicates(t *testing.T) {
	c := &Consul{cfg: ConsulConfig{Region: "r1"}, log: slog.New(slog.DiscardHandler)}
	e := func(id, addr string) *api.ServiceEntry {
		return &api.ServiceEntry{Service: &api.AgentService{ID: id, Meta: map[string]string{"region": "r1", "grpc_addr": addr}}}
	}
	got := c.parseEntries([]*api.ServiceEntry{e("c", "10.0.0.3:1"), e("a", "10.0.0.1:1"), e("c", "10.0.0.4:1"), e("b", "bad")})
	if ids := ids(got); !slices.Equal(ids, []string{"a", "c"}) {
		t.Fatalf("members %q, want a, c", ids)
	}
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct{ prev, last, want uint64 }{
		{0, 0, 1},   // never block on 0
		{0, 42, 42}, // first answer
		{42, 42, 42},
		{42, 50, 50},
		{42, 7, 0}, // went backwards: start over
	} {
		if got := nextIndex(tc.prev, tc.last); got != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.last, got, tc.want)
		}
	}
}

func TestDiffMembers(t *testing.T) {
	m := func(ids ...string) []Member {
		out := make([]Member, len(ids))
		for i, id := range ids {
			out[i] = Member{ID: id}
		}
		return out
	}
	added, removed := diffMembers(m("a", "b", "d"), m("b", "c", "d", "e"))
	if !slices.Equal(added, []string{"c", "e"}) || !slices.Equal(removed, []string{"a"}) {
		t.Fatalf("added %q removed %q, want [c e] [a]", added, removed)
	}
}
