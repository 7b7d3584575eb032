package cachenode

import (
	"context"
	"path"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// announcedByFirstNode starts a region of two nodes over a lake holding
// ckpt.pt ("in the lake") and returns it, its second node (which can
// reach the first over gRPC) and an entry of that path in the first
// node's write-back journal, as the first node would announce it; the
// first node's journal does not have it.
func announcedByFirstNode(t *testing.T) (*seedRegion, *seedNode, *nodepb.Entry) {
	t.Helper()
	r := newSeedRegion(t, 2, 64*mib, nil, quietLogger())
	a, b := r.nodes[0], r.nodes[1]
	b.cfg.PeerConn = func(addr string) (grpc.ClientConnInterface, error) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			t.Cleanup(func() { cc.Close() })
		}
		return cc, err
	}
	if _, err := r.lake.Create(context.Background(), "ckpt.pt", strings.NewReader("in the lake")); err != nil {
		t.Fatal(err)
	}
	return r, b, &nodepb.Entry{Path: "/lake/a/ckpt.pt", Size: 7, Version: journalVersionPrefix + a.id + ":1-0123456789ab"}
}

// A write-back file another node announced is answered by a stat, and
// listed, here while its node is down (its readers get an error, not the
// lake's older version), and asked about while that node is up: an entry
// whose upload this node never heard of is dropped, and the lake's
// version answered.
func TestAnnouncedPendingFilesAreChecked(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		lookup func(t *testing.T, b *seedNode, p string) *nodepb.Entry
	}{
		{"stat", func(t *testing.T, b *seedNode, p string) *nodepb.Entry {
			reply, err := b.Stat(ctx, &nodepb.StatRequest{Path: p})
			if err != nil {
				t.Fatal(err)
			}
			return reply.GetEntry()
		}},
		{"list", func(t *testing.T, b *seedNode, p string) *nodepb.Entry {
			reply, err := b.List(ctx, &nodepb.ListRequest{Path: path.Dir(p)})
			if err != nil {
				t.Fatal(err)
			}
			var found *nodepb.Entry
			for _, e := range reply.GetEntries() {
				if e.GetPath() == p {
					if found != nil {
						t.Fatalf("%s listed twice", p)
					}
					found = e
				}
			}
			if found == nil {
				t.Fatalf("%s not listed", p)
			}
			return found
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, b, announced := announcedByFirstNode(t)
			p := announced.GetPath()

			// a is up and has no such file in its journal: the lake's.
			b.Pending(ctx, &nodepb.PendingRequest{Dir: path.Dir(p), Add: []*nodepb.Entry{announced}})
			if e := tc.lookup(t, b, p); e.GetVersion() == announced.GetVersion() || e.GetSize() != int64(len("in the lake")) {
				t.Fatalf("%s while the announcing node is up and no longer has it: %v; want the lake's file", tc.name, e)
			}
			if b.pendingEntry(p) != nil {
				t.Errorf("the entry its node no longer has is still pending here")
			}

			// a is down: the announced entry, not the lake's older file.
			b.Pending(ctx, &nodepb.PendingRequest{Dir: path.Dir(p), Add: []*nodepb.Entry{announced}})
			r.mu.Lock()
			r.members = r.members[1:]
			r.mu.Unlock()
			if e := tc.lookup(t, b, p); e.GetVersion() != announced.GetVersion() {
				t.Fatalf("%s while the announcing node is down: %v; want its journal entry %v", tc.name, e, announced)
			}
		})
	}
}
