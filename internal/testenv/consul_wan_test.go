package testenv

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func consulClient(t *testing.T, a *ConsulAgent) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Datacenter: a.Datacenter})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A node registered in datacenter b is visible from c's agent with ?dc=b,
// and only there: c's own catalog does not hold it. b and c both joined a,
// so c learnt of b through WAN gossip, not a direct join.
func TestConsulWANSeesOtherDatacenter(t *testing.T) {
	agents := ConsulWAN(t, "a", "b", "c")
	for i, want := range []string{"a", "b", "c"} {
		if agents[i].Datacenter != want {
			t.Fatalf("agent %d in datacenter %s, want %s", i, agents[i].Datacenter, want)
		}
	}
	b, c := consulClient(t, agents[1]), consulClient(t, agents[2])
	err := b.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "lakemesh-b-1", Name: "lakemesh", Address: "127.0.0.1", Port: 7001,
		Meta: map[string]string{"region": "b"},
	})
	if err != nil {
		t.Fatalf("register in b: %v", err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		svcs, _, err := c.Catalog().Service("lakemesh", "", &api.QueryOptions{Datacenter: "b"})
		if err == nil && len(svcs) == 1 {
			if s := svcs[0]; s.ServiceID != "lakemesh-b-1" || s.Datacenter != "b" || s.ServiceMeta["region"] != "b" {
				t.Fatalf("from c with dc=b: %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service registered in b not visible from c with dc=b after 30 s: %d services, %v", len(svcs), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	local, _, err := c.Catalog().Service("lakemesh", "", nil)
	if err != nil || len(local) != 0 {
		t.Fatalf("c's own catalog: %d services, %v; want none", len(local), err)
	}
}
