package cachenode

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// newListingPair returns two nodes over one lake on one clock: owner, which
// owns every directory's metadata and serves gRPC, and other, which asks
// owner for its listings.
func newListingPair(t *testing.T, lake *countingLake) (owner, other *Node, clock *testClock) {
	t.Helper()
	owner, clock = newMetaNode(t, lake, 0)
	owner.cfg.ID = "owner"
	cc := serveTestNode(t, owner)
	other, _ = newMetaNode(t, lake, 0)
	other.cfg.ID = "other"
	other.meta.now = clock.Now
	other.cfg.PageOwners = func(keys []string) []*nodepb.Member {
		ms := make([]*nodepb.Member, len(keys))
		for i := range keys {
			ms[i] = &nodepb.Member{Id: "owner", Addr: cc.Target()}
		}
		return ms
	}
	other.cfg.PeerConn = func(string) (grpc.ClientConnInterface, error) { return cc, nil }
	return owner, other, clock
}

// Stats of one directory spread over two nodes revalidate it with one lake
// listing, not one per node: the other node reads the owner's page, and
// the owner's own stats read the page it cached for that. The answers are
// the lake's.
func TestStatListingsOfARegionShareOneLakeListing(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("d/f%04d", i))
		lake.put(names[i], int64(100+i), fmt.Sprintf("v1-%d", i))
	}
	owner, other, _ := newListingPair(t, lake)

	statAll(t, other, lake, names, 8)
	if l := lake.lists.Load(); l != 1 {
		t.Fatalf("the other node's stats of 200 files listed %d lake pages, want 1 (the owner's)", l)
	}
	statAll(t, owner, lake, names, 8)
	t.Logf("200 files stat'ed on both nodes: %d lake stats, %d lake list pages", lake.stats.Load(), lake.lists.Load())
	if l := lake.lists.Load(); l != 1 {
		t.Fatalf("the owner's stats listed the lake again: %d pages in all, want 1", l)
	}
	if s := lake.stats.Load(); s > 2*listTrigger {
		t.Fatalf("%d lake stats for 200 files on two nodes, want at most %d", s, 2*listTrigger)
	}
}

// An owner's page is as old as the owner's lake call, not as the other
// node's: its entries expire there, so a change in the lake shows within
// the TTL of the lake call, however late in it the other node asked.
func TestOwnersListingExpiresWithTheOwnersLakeCall(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 100 {
		names = append(names, fmt.Sprintf("d/f%04d", i))
		lake.put(names[i], int64(100+i), fmt.Sprintf("v1-%d", i))
	}
	owner, other, clock := newListingPair(t, lake)
	statAll(t, owner, lake, names, 4) // the owner lists the lake now

	clock.Advance(testTTL - 5*time.Second)
	listed := lake.lists.Load()
	// One goroutine: the first misses ask the lake (their answers are
	// as fresh as now), the rest are answered from the owner's page.
	statAll(t, other, lake, names, 1)
	if l := lake.lists.Load(); l != listed {
		t.Fatalf("the other node listed the lake (%d pages) with the owner's page still fresh", l-listed)
	}

	lake.put(names[50], 9999, "v2-50")
	clock.Advance(6 * time.Second) // past the owner's call + TTL, not the other's
	statAll(t, other, lake, names, 4)
}

// A node that saw a directory change does not take an owner's page the
// lake gave before it (the owner may not have applied the invalidation
// yet): it lists the lake itself.
func TestOwnersPageOlderThanAnInvalidationIsNotUsed(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 100 {
		names = append(names, fmt.Sprintf("d/f%04d", i))
		lake.put(names[i], int64(100+i), fmt.Sprintf("v1-%d", i))
	}
	owner, other, clock := newListingPair(t, lake)
	statAll(t, owner, lake, names, 4)

	clock.Advance(time.Second)
	lake.put(names[3], 7777, "v2-3")
	other.InvalidateLocal("/lake/t/" + names[3]) // the owner never hears of it
	clock.Advance(time.Second)
	listed := lake.lists.Load()
	statAll(t, other, lake, names, 4)
	if l := lake.lists.Load(); l != listed+1 {
		t.Fatalf("the other node listed %d lake pages after the change, want 1 of its own", l-listed)
	}
}

// A file made in the lake after the owner's page was listed, stat'ed
// while the other node revalidates the directory from that page, is
// found: a path an older page does not show is asked of the lake.
func TestOwnersOlderPageDoesNotHideANewFile(t *testing.T) {
	lake := newCountingLake()
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("d/f%04d", i))
		lake.put(names[i], int64(100+i), fmt.Sprintf("v1-%d", i))
	}
	owner, other, clock := newListingPair(t, lake)
	statAll(t, owner, lake, names, 1)

	clock.Advance(time.Second)
	lake.put("d/new", 4242, "v1-new")
	// Three misses, then the new file's: the listing it starts is
	// served from the owner's page, which does not show it.
	statAll(t, other, lake, append(names[:3:3], "d/new"), 1)
}
