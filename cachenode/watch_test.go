package cachenode

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// A node passes each invalidation on to its watchers: the changed paths,
// a directory whose own listing changed, or everything below a path
// (lakemesh sync); StopWatches ends the streams.
func TestNodeWatch(t *testing.T) {
	n := NewNode(NodeConfig{ID: "n1", Region: "r"})
	nc := nodepb.NewNodeClient(serveTestNode(t, n))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watch := func() nodepb.Node_WatchClient {
		t.Helper()
		in, err := nc.Watch(ctx, &nodepb.WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Recv(); err != nil { // in place
			t.Fatal(err)
		}
		return in
	}
	in := watch()
	for _, req := range []*nodepb.InvalidateRequest{
		{Path: "/lake/a/d", Changed: []string{"/lake/a/d/f", "/lake/a/d/g"}},
		{Path: "/lake/a", SelfOnly: true},
		{Path: "/lake/a/x"},
	} {
		if _, err := nc.Invalidate(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []*nodepb.Change{
		{Paths: []string{"/lake/a/d/f", "/lake/a/d/g"}},
		{Dirs: []string{"/lake/a"}},
		{Below: "/lake/a/x"},
	} {
		got, err := in.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.GetPaths(), want.GetPaths()) || !slices.Equal(got.GetDirs(), want.GetDirs()) || got.GetBelow() != want.GetBelow() || got.GetLost() {
			t.Errorf("change %d: got %v, want %v", i, got, want)
		}
	}

	idle := watch()
	n.StopWatches()
	if c, err := idle.Recv(); err != io.EOF {
		t.Errorf("a watch after StopWatches: %v, %v; want its stream ended (EOF)", c, err)
	}
	w, err := nc.Watch(ctx, &nodepb.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a watch opened after StopWatches: %v, want Unavailable", err)
	}
}

// A watcher more than its queue behind is dropped and told it lost
// changes; the others go on.
func TestWatchersDropOneFallenBehind(t *testing.T) {
	var ws watchers
	slow, _ := ws.add()
	for i := range watchQueue + 1 {
		ws.publish(&nodepb.Change{Paths: []string{"/lake/a/f"}})
		if i == watchQueue-1 {
			if _, ok := ws.add(); !ok {
				t.Fatal("no watcher can be added")
			}
		}
	}
	var got int
	for range slow.ch {
		got++
	}
	if got != watchQueue {
		t.Errorf("the slow watcher got %d changes, want its queue's %d", got, watchQueue)
	}
	select {
	case <-slow.lost:
	default:
		t.Error("the slow watcher was not told it lost changes")
	}
	if len(ws.subs) != 1 || ws.dropped != 1 || ws.changes != watchQueue+1 {
		t.Errorf("%d watchers left, %d dropped, %d changes; want the one that kept up, 1, %d", len(ws.subs), ws.dropped, ws.changes, watchQueue+1)
	}
}
