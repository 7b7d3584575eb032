package cachenode

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
	if l.stubborn {
		<-l.release
		return l.FS.Create(context.WithoutCancel(ctx), p, r)
	}
	select {
	case <-l.release:
		return l.FS.Create(ctx, p, r)
	case <-ctx.Done():
		return ufs.FileInfo{}, ctx.Err()
	}
}

// A file deleted, or written again straight to the lake, while its
// write-back upload is in flight does not come back, or come back old,
// when that upload ends: the upload is cancelled, and the delete or the
// write waits for it to end before it changes the lake.
func TestChangeDuringWriteBackUpload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stubborn bool
		write    bool // a write-through instead of a delete
	}{
		{"delete", false, false},
		{"deleteStubbornLake", true, false},
		{"writeThroughStubbornLake", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lakeDir := t.TempDir()
			fs, err := ufs.Open(context.Background(), "file://"+lakeDir)
			if err != nil {
				t.Fatal(err)
			}
			lake := &heldLake{FS: fs, stubborn: tc.stubborn, started: make(chan string, 1), release: make(chan struct{})}
			journal, err := OpenJournal(t.TempDir(), "n1", nil)
			if err != nil {
				t.Fatal(err)
			}
			var back atomic.Bool
			back.Store(true)
			node := NewNode(NodeConfig{ID: "n1", Region: "r", Lakes: NewLakes([]Lake{{Path: "/lake/a", FS: lake}}),
				Journal: journal, WriteBack: func(string) bool { return back.Load() }})
			srv := grpc.NewServer()
			nodepb.RegisterNodeServer(srv, node)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(lis)
			cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			uploads := make(chan struct{})
			go func() { node.RunUploads(ctx); close(uploads) }()
			var releaseOnce sync.Once
			releaseLake := func() { releaseOnce.Do(func() { close(lake.release) }) }
			t.Cleanup(func() { releaseLake(); cancel(); <-uploads; cc.Close(); srv.Stop(); fs.Close() })
			n := &writeTestNode{cc: cc, lakeDir: lakeDir, journal: journal}

			n.writeProto(t, "/lake/a/f", []byte("written back"), 1<<20)
			select {
			case <-lake.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the write-back upload did not start")
			}
			done := make(chan error, 1)
			go func() {
				if tc.write {
					back.Store(false)
					done <- writeOnce(cc, "/lake/a/f", "written through")
					return
				}
				_, err := nodepb.NewNodeClient(cc).Delete(context.Background(), &nodepb.DeleteRequest{Path: "/lake/a/f"})
				done <- err
			}()
			if tc.stubborn {
				select {
				case err := <-done:
					t.Fatalf("the change returned (%v) while the upload it must wait for was still in flight", err)
				case <-time.After(200 * time.Millisecond):
				}
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
			switch {
			case tc.write && string(b) != "written through":
				t.Errorf("the lake's file is %q (%v), want the write-through's bytes", b, err)
			case !tc.write && err == nil:
				t.Errorf("the lake has the deleted file again: %q", b)
			case !tc.write && !os.IsNotExist(err):
				t.Error(err)
			}
			if !tc.write {
				des, _ := os.ReadDir(lakeDir)
				for _, de := range des {
					if !strings.HasPrefix(de.Name(), ufs.TempPrefix) {
						t.Errorf("the lake has %s", de.Name())
					}
				}
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
