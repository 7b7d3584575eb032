package cachenode

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// heldLake holds its first Create until released: an upload in flight
// (later Creates pass at once). A
// stubborn one finishes its Create even when the upload is cancelled, as
// a lake that had all the bytes already (or a remote region's node that
// did not hear of the cancel in time) does.
type heldLake struct {
	ufs.FS
	stubborn bool
	started  chan string
	release  chan struct{}
	creates  atomic.Int32
}

func (l *heldLake) Create(ctx context.Context, p string, r io.Reader) (ufs.FileInfo, error) {
	if l.creates.Add(1) > 1 {
		return l.FS.Create(ctx, p, r)
	}
	select {
	case l.started <- p:
	default:
	}
	<-l.release
	return l.FS.Create(ctx, p, r)
}

// A file deleted, written again straight to the lake, or renamed over
// while its write-back upload is in flight does not come back, or come
// back old, when that upload ends: the change waits for the upload to
// end before it changes the lake.
func TestChangeDuringWriteBackUpload(t *testing.T) {
	for _, change := range []string{"delete", "writeThrough", "renameOver"} {
		t.Run(change, func(t *testing.T) {
			lakeDir := t.TempDir()
			fs, err := ufs.Open(context.Background(), "file://"+lakeDir)
			if err != nil {
				t.Fatal(err)
			}
			lake := &heldLake{FS: fs, started: make(chan string, 1), release: make(chan struct{})}
			journal, err := OpenJournal(t.TempDir(), "n1", nil)
			if err != nil {
				t.Fatal(err)
			}
			var back atomic.Bool
			back.Store(true)
			node := NewNode(NodeConfig{ID: "n1", Region: "r", Lakes: NewLakes([]Lake{{Path: "/lake/a", FS: lake}}),
				Journal: journal, WriteBack: func(string) bool { return back.Load() }})
			t.Cleanup(func() { fs.Close() })
			cc := serveTestNode(t, node)
			ctx, cancel := context.WithCancel(context.Background())
			uploads := make(chan struct{})
			go func() { node.RunUploads(ctx); close(uploads) }()
			var releaseOnce sync.Once
			releaseLake := func() { releaseOnce.Do(func() { close(lake.release) }) }
			t.Cleanup(func() { releaseLake(); cancel(); <-uploads })
			n := &writeTestNode{cc: cc, lakeDir: lakeDir, journal: journal}

			if err := os.WriteFile(filepath.Join(lakeDir, "g"), []byte("renamed over it"), 0o644); err != nil {
				t.Fatal(err)
			}
			n.writeProto(t, "/lake/a/f", []byte("written back"), 1<<20)
			select {
			case <-lake.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the write-back upload did not start")
			}
			done := make(chan error, 1)
			go func() {
				var err error
				switch change {
				case "writeThrough":
					back.Store(false)
					err = writeOnce(cc, "/lake/a/f", "written through")
				case "renameOver":
					_, err = nodepb.NewNodeClient(cc).Rename(context.Background(), &nodepb.RenameRequest{From: "/lake/a/g", To: "/lake/a/f"})
				default:
					_, err = nodepb.NewNodeClient(cc).Delete(context.Background(), &nodepb.DeleteRequest{Path: "/lake/a/f"})
				}
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("the change returned (%v) while the upload it must wait for was still in flight", err)
			case <-time.After(200 * time.Millisecond):
			}
			releaseLake()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the change did not return")
			}
			// The uploader has nothing left; give it time to do harm.
			time.Sleep(200 * time.Millisecond)
			if got := journal.All(); len(got) != 0 {
				t.Errorf("the journal still has %d entries: %+v", len(got), got)
			}
			b, err := os.ReadFile(filepath.Join(lakeDir, "f"))
			want := map[string]string{"writeThrough": "written through", "renameOver": "renamed over it"}[change]
			switch {
			case want != "" && string(b) != want:
				t.Errorf("the lake's file is %q (%v), want %q", b, err, want)
			case want == "" && err == nil:
				t.Errorf("the lake has the deleted file again: %q", b)
			case want == "" && !os.IsNotExist(err):
				t.Error(err)
			}
		})
	}
}

// writeOnce writes data to p in one protobuf write stream.
func writeOnce(cc *grpc.ClientConn, p, data string) error {
	w, err := nodepb.NewNodeClient(cc).Write(context.Background())
	if err != nil {
		return err
	}
	if err := w.Send(&nodepb.WriteChunk{Path: p, Data: []byte(data)}); err != nil {
		return err
	}
	_, err = w.CloseAndRecv()
	return err
}

// When an older write of a path reaches its lake while a newer one is
// still in the journal, the region is told of the newer one again, not
// that the path is uploaded: that would drop the newer write from the
// other nodes' listings, which would show the lake's older file.
func TestUploadOfAnOlderWriteKeepsTheNewerAnnounced(t *testing.T) {
	fs, err := ufs.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	journal, err := OpenJournal(t.TempDir(), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var told []*nodepb.PendingRequest
	node := NewNode(NodeConfig{ID: "n1", Region: "r", Lakes: NewLakes([]Lake{{Path: "/lake/a", FS: fs}}), Journal: journal,
		Announce: func(_ context.Context, req *nodepb.PendingRequest) error {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, req)
			return nil
		}})
	last := func() *nodepb.PendingRequest {
		mu.Lock()
		defer mu.Unlock()
		return told[len(told)-1]
	}
	older, err := journal.Append("/lake/a/f", strings.NewReader("older"))
	if err != nil {
		t.Fatal(err)
	}
	newer, err := journal.Append("/lake/a/f", strings.NewReader("newer!"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		e       JournalEntry
		addOf   string // the version told pending, or ""
		removed bool
	}{{older, newer.Version(), false}, {newer, "", true}} {
		if !journal.claim(tc.e.ID) {
			t.Fatalf("entry %s is not pending", tc.e.ID)
		}
		if _, err := node.upload(ctx, tc.e, "write-back"); err != nil {
			t.Fatal(err)
		}
		req := last()
		if tc.removed != (len(req.GetRemove()) == 1) || (tc.addOf == "") != (len(req.GetAdd()) == 0) ||
			(tc.addOf != "" && req.GetAdd()[0].GetVersion() != tc.addOf) {
			t.Errorf("after the upload of %s the region was told %v, want add %q / removed %v", tc.e.Version(), req, tc.addOf, tc.removed)
		}
	}
}
