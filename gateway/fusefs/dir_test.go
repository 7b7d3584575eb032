package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestMountLargeDirectory lists a 3,000-entry directory through pages of
// 500 and checks the pages are fetched as the kernel asks for entries,
// not all before the first answer.
func TestMountLargeDirectory(t *testing.T) {
	const entries, page = 3000, 500
	tm := mountLakes(t, mountOptions{pageSize: page})
	dir := filepath.Join(tm.lake, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < entries; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	f, err := os.Open(tm.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := tm.ns.lists.Load()
	first, err := f.ReadDir(10)
	if err != nil || len(first) != 10 {
		t.Fatalf("first 10 entries: %d, %v", len(first), err)
	}
	if got := tm.ns.lists.Load() - before; got != 1 {
		t.Errorf("reading the first 10 entries made %d List calls, want 1 (the listing is not lazy)", got)
	}
	rest, err := f.ReadDir(-1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, de := range append(first, rest...) {
		if seen[de.Name()] {
			t.Errorf("%s listed twice", de.Name())
		}
		seen[de.Name()] = true
	}
	for i := 0; i < entries; i++ {
		if name := fmt.Sprintf("file-%05d", i); !seen[name] {
			t.Fatalf("%s not listed (%d of %d listed)", name, len(seen), entries)
		}
	}
	lists := tm.ns.lists.Load() - before
	if lists < entries/page || lists > entries/page+1 {
		t.Errorf("listing %d entries by pages of %d made %d List calls, want %d or %d", entries, page, lists, entries/page, entries/page+1)
	}
	t.Logf("%d entries in %d List calls", len(seen), lists)

	// READDIRPLUS answers lookups from the listing: stat of every entry
	// after the listing costs no Stat.
	stats := tm.ns.stats.Load()
	for i := 0; i < 100; i++ {
		if _, err := os.Lstat(tm.path(fmt.Sprintf("big/file-%05d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := tm.ns.stats.Load() - stats; got > 5 {
		t.Errorf("stat of 100 listed entries made %d Stat calls, want ~0", got)
	}

	// Seeking back to the start lists again.
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	again, err := f.ReadDir(-1)
	if err != nil || len(again) != entries {
		t.Errorf("after rewind: %d entries, %v", len(again), err)
	}
}

func TestMountNegativeLookupCached(t *testing.T) {
	tm := mountLakes(t, mountOptions{ttl: 3 * time.Second})
	if _, err := os.Stat(tm.path("")); err != nil {
		t.Fatal(err)
	}
	before := tm.ns.stats.Load()
	_, err := os.Stat(tm.path("nothing-here"))
	wantErrno(t, "stat of a missing file", err, syscall.ENOENT)
	if got := tm.ns.stats.Load() - before; got != 1 {
		t.Fatalf("first stat made %d Stat calls", got)
	}
	// Appears in the lake behind the mount's back: the kernel keeps
	// saying ENOENT until the negative entry expires, without asking.
	os.WriteFile(filepath.Join(tm.lake, "nothing-here"), []byte("now"), 0o644)
	for i := 0; i < 10; i++ {
		_, err := os.Stat(tm.path("nothing-here"))
		wantErrno(t, "stat again", err, syscall.ENOENT)
	}
	if got := tm.ns.stats.Load() - before; got != 1 {
		t.Errorf("11 stats of a missing file made %d Stat calls, want 1 (negative lookups not cached)", got)
	}
	eventually(t, 10*time.Second, func() error {
		_, err := os.Stat(tm.path("nothing-here"))
		return err
	})
	// A file this mount creates is visible at once, negative entry or not.
	_, err = os.Stat(tm.path("mine"))
	wantErrno(t, "stat of a missing file", err, syscall.ENOENT)
	if err := os.WriteFile(tm.path("mine"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tm.path("mine")); err != nil {
		t.Errorf("a file created here is not visible at once: %v", err)
	}
}

// A namespace call that outlives its timeout fails with ETIMEDOUT.
func TestMountTimeout(t *testing.T) {
	tm := mountLakes(t, mountOptions{opTimeout: 300 * time.Millisecond})
	if _, err := os.Stat(tm.path("")); err != nil {
		t.Fatal(err)
	}
	tm.ns.statDelay.Store(int64(time.Minute))
	start := time.Now()
	_, err := os.Stat(tm.path("slow"))
	wantErrno(t, "stat through a hung namespace", err, syscall.ETIMEDOUT)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the stat took %v with a 300ms timeout", took)
	}
}
