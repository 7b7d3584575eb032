package router

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/region"
)

// A client's watch hears the changes other clients make in the region,
// each path told by the node of its directory, and not its own.
func TestWatchChangesOfOtherClients(t *testing.T) {
	r := startTestRegion(t, 3, 1<<20, nil)
	a, b := r.client(t), r.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := func(c *Client) chan Change {
		ch := make(chan Change, 100)
		c.WatchChanges(ctx, func(c Change) { ch <- c })
		return ch
	}
	heardA, heardB := watch(a), watch(b)
	// paths gathers the changed paths heard within d.
	paths := func(ch chan Change, d time.Duration) []string {
		var got []string
		deadline := time.After(d)
		for {
			select {
			case c := <-ch:
				got = append(got, c.Paths...)
			case <-deadline:
				slices.Sort(got)
				return got
			}
		}
	}
	for _, p := range []string{"/lake/a/x", "/lake/a/d/e/y"} {
		if _, err := a.Put(ctx, p, strings.NewReader("from a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Rename(ctx, "/lake/a/x", "/lake/a/z"); err != nil {
		t.Fatal(err)
	}
	want := []string{"/lake/a/d/e/y", "/lake/a/x", "/lake/a/x", "/lake/a/z"}
	if got := paths(heardB, time.Second); !slices.Equal(got, want) {
		t.Errorf("b heard %q, want %q", got, want)
	}
	if got := paths(heardA, 100*time.Millisecond); len(got) != 0 {
		t.Errorf("a heard its own changes: %q", got)
	}
	if _, err := b.Put(ctx, "/lake/a/w", strings.NewReader("from b")); err != nil {
		t.Fatal(err)
	}
	if got := paths(heardA, time.Second); !slices.Equal(got, []string{"/lake/a/w"}) {
		t.Errorf("a heard %q after b's write, want [/lake/a/w]", got)
	}
}

// WatchChanges returns within its wait for the members' watches when
// several members do not answer, not after one wait per member.
func TestWatchChangesWithMembersDown(t *testing.T) {
	r := startTestRegion(t, 1, 1<<20, nil)
	members := r.cfg.Members.(*region.Static)
	up := members.Members()[0]
	down := func(id string) region.Member {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close() // nothing answers there
		return region.Member{ID: id, Region: "r", Addr: addr}
	}
	members.Set(up, down("n8"), down("n9"))
	c := r.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	returned := make(chan struct{})
	go func() { c.WatchChanges(ctx, func(Change) {}); close(returned) }()
	select {
	case <-returned:
	case <-time.After(watchReady + 2*time.Second):
		t.Errorf("WatchChanges had not returned %v after it was called with two members down, want about %v", watchReady+2*time.Second, watchReady)
	}
}
