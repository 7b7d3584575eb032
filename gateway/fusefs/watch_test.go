package fusefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lakemesh/lakemesh/router"
)

// pushedChanges is a namespace whose changes the test pushes
// (router.Watcher).
type pushedChanges struct {
	router.Namespace
	fn chan func(router.Change)
}

func (p *pushedChanges) WatchChanges(ctx context.Context, fn func(router.Change)) { p.fn <- fn }

// The mount drops what it and the kernel hold of each change it is told
// of, well before the TTL for which both would keep it: a rewritten
// file's size and bytes, a new file under a directory the kernel had
// cached as missing, and after lost changes, everything. (This
// namespace caches no listings; a region's nodes do, and
// TestMount/changesElsewhereShowAtOnce in package test checks those.)
func TestMountDropsWhatItIsToldChanged(t *testing.T) {
	pushed := &pushedChanges{fn: make(chan func(router.Change), 1)}
	tm := mountLakes(t, mountOptions{ttl: 10 * time.Minute, wrap: func(ns router.Namespace) router.Namespace {
		pushed.Namespace = ns
		return pushed
	}})
	var tell func(router.Change)
	select {
	case tell = <-pushed.fn:
	case <-time.After(5 * time.Second):
		t.Fatal("the mount did not watch its namespace")
	}
	lakeFile := func(rel, content string) {
		t.Helper()
		p := filepath.Join(tm.lake, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	soon := func(what, rel, want string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			got, err := os.ReadFile(tm.path(rel))
			if want == "" && errors.Is(err, os.ErrNotExist) || err == nil && string(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the mount reads %q (%v) at %s, want %q", what, got, err, rel, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	lakeFile("f.txt", "one")
	soon("first read", "f.txt", "one")
	// Changed behind the mount's back: it keeps the old answer, never
	// the new content... (A read error is no new content either: when the
	// kernel asks for a clean cached page again, as 6.18 does now and
	// then, see TestMountPageCacheKeptPerVersion, the mount refuses to
	// read the old version from a lake that has a new one.)
	lakeFile("f.txt", "two, longer")
	time.Sleep(200 * time.Millisecond)
	if got, err := os.ReadFile(tm.path("f.txt")); err == nil && string(got) != "one" {
		t.Fatalf("the mount read %q before it was told of the change: the test shows nothing", got)
	}
	// ...until told.
	tell(router.Change{Paths: []string{"/lake/a/f.txt"}})
	soon("a rewritten file", "f.txt", "two, longer")

	// A name the kernel cached as missing, under a new directory.
	soon("missing at first", "d/g.txt", "")
	lakeFile("d/g.txt", "new")
	tell(router.Change{Paths: []string{"/lake/a/d/g.txt"}, Dirs: []string{"/lake/a"}})
	soon("a file in a new directory", "d/g.txt", "new")

	// Lost changes: everything goes.
	lakeFile("f.txt", "three")
	lakeFile("d/g.txt", "newer")
	tell(router.Change{Lost: true})
	soon("after lost changes", "f.txt", "three")
	soon("after lost changes", "d/g.txt", "newer")
}
