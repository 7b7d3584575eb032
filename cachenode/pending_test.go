package cachenode

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// A write-back file another node announced is answered by a stat here
// while its node is down (its readers get an error, not the lake's older
// version), and asked about while that node is up: an entry whose upload
// this node never heard of is dropped, and the lake's version answered.
func TestStatChecksAnnouncedPendingFiles(t *testing.T) {
	r := newSeedRegion(t, 2, 64*mib, nil, quietLogger())
	a, b := r.nodes[0], r.nodes[1]
	b.cfg.PeerConn = func(addr string) (grpc.ClientConnInterface, error) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			t.Cleanup(func() { cc.Close() })
		}
		return cc, err
	}
	ctx := context.Background()
	if _, err := r.lake.Create(ctx, "ckpt.pt", strings.NewReader("in the lake")); err != nil {
		t.Fatal(err)
	}
	const p = "/lake/a/ckpt.pt"
	announced := &nodepb.Entry{Path: p, Size: 7, Version: journalVersionPrefix + a.id + ":1-0123456789ab"}
	stat := func() *nodepb.Entry {
		t.Helper()
		reply, err := b.Stat(ctx, &nodepb.StatRequest{Path: p})
		if err != nil {
			t.Fatal(err)
		}
		return reply.GetEntry()
	}

	// a is up and has no such file in its journal: the lake's answer.
	b.Pending(ctx, &nodepb.PendingRequest{Dir: "/lake/a", Add: []*nodepb.Entry{announced}})
	if e := stat(); e.GetVersion() == announced.GetVersion() || e.GetSize() != int64(len("in the lake")) {
		t.Fatalf("stat while the announcing node is up and no longer has it: %v; want the lake's file", e)
	}
	if b.pendingEntry(p) != nil {
		t.Errorf("the entry its node no longer has is still pending here")
	}

	// a is down: the announced entry, not the lake's older file.
	b.Pending(ctx, &nodepb.PendingRequest{Dir: "/lake/a", Add: []*nodepb.Entry{announced}})
	r.mu.Lock()
	r.members = r.members[1:]
	r.mu.Unlock()
	if e := stat(); e.GetVersion() != announced.GetVersion() {
		t.Fatalf("stat while the announcing node is down: %v; want its journal entry %v", e, announced)
	}
}
