package region

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func testMembers(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("node-%03d", i), Region: "r1", Addr: fmt.Sprintf("10.0.0.%d:7000", i+1)}
	}
	return ms
}

func testKey(i int) string {
	return fmt.Sprintf("/lake/s3-use1/train/shard-%06d.tar@v1#%d", i/64, i%64)
}

func ids(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func without(ms []Member, id string) []Member {
	return slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.ID == id })
}

// TestRankGolden pins the hash: these owners must never change, or every
// deployed region would move every page on upgrade.
func TestRankGolden(t *testing.T) {
	ms := testMembers(5)
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{"", []string{"node-003", "node-001", "node-000", "node-002", "node-004"}},
		{"/lake/s3-use1/a", []string{"node-004", "node-002", "node-003", "node-000", "node-001"}},
		{"/lake/hdfs-bj/warehouse/t1/part-0000", []string{"node-004", "node-001", "node-002", "node-000", "node-003"}},
		{"node-001", []string{"node-004", "node-000", "node-001", "node-003", "node-002"}},
	} {
		if got := ids(Rank(tc.key, ms)); !slices.Equal(got, tc.want) {
			t.Errorf("Rank(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestRankDeterministicAndOrderIndependent(t *testing.T) {
	ms := testMembers(16)
	shuffled := slices.Clone(ms)
	rng := rand.New(rand.NewPCG(1, 2))
	p := NewPlacement(ms)
	var buf []Member
	for i := range 2000 {
		key := testKey(i)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		want := Rank(key, ms)
		if got := Rank(key, shuffled); !slices.Equal(got, want) {
			t.Fatalf("Rank(%q) depends on input order: %q vs %q", key, ids(got), ids(want))
		}
		if got := Rank(key, ms); !slices.Equal(got, want) {
			t.Fatalf("Rank(%q) not deterministic", key)
		}
		if o, ok := Owner(key, shuffled); !ok || o != want[0] {
			t.Fatalf("Owner(%q) = %v, want Rank[0] %v", key, o.ID, want[0].ID)
		}
		if o, ok := p.Owner(key); !ok || o != want[0] {
			t.Fatalf("Placement.Owner(%q) = %v, want %v", key, o.ID, want[0].ID)
		}
		buf = p.RankInto(buf, key)
		if !slices.Equal(buf, want) {
			t.Fatalf("Placement.RankInto(%q) = %q, want %q", key, ids(buf), ids(want))
		}
	}
}

func TestRankEmpty(t *testing.T) {
	if _, ok := Owner("k", nil); ok {
		t.Fatal("Owner over no members reported an owner")
	}
	if _, ok := NewPlacement(nil).Owner("k"); ok {
		t.Fatal("Placement.Owner over no members reported an owner")
	}
	if got := Rank("k", nil); len(got) != 0 {
		t.Fatalf("Rank over no members = %v", got)
	}
}

func TestRankLargeSet(t *testing.T) {
	// More members than RankInto ranks on the stack.
	ms := testMembers(300)
	r := Rank("k", ms)
	if len(r) != len(ms) {
		t.Fatalf("Rank returned %d of %d members", len(r), len(ms))
	}
	if o, _ := Owner("k", ms); o != r[0] {
		t.Fatalf("Owner %s != Rank[0] %s", o.ID, r[0].ID)
	}
	if !slices.Equal(without(r, r[0].ID), Rank("k", without(ms, r[0].ID))) {
		t.Fatal("failover order differs from Rank without the owner")
	}
}

func TestOwnerUniform(t *testing.T) {
	for _, n := range []int{3, 5, 16} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			const keys = 100_000
			ms := testMembers(n)
			count := map[string]int{}
			for i := range keys {
				o, _ := Owner(testKey(i), ms)
				count[o.ID]++
			}
			fair := float64(keys) / float64(n)
			for _, m := range ms {
				dev := (float64(count[m.ID]) - fair) / fair
				if dev > 0.05 || dev < -0.05 {
					t.Errorf("%s owns %d keys, fair share %.0f (%+.1f%%)", m.ID, count[m.ID], fair, dev*100)
				}
			}
		})
	}
}

func TestRemoveMemberMovesOnlyItsKeys(t *testing.T) {
	const keys = 50_000
	ms := testMembers(5)
	gone := ms[2].ID
	after := without(ms, gone)
	moved := 0
	for i := range keys {
		key := testKey(i)
		rank := Rank(key, ms)
		o, _ := Owner(key, after)
		if rank[0].ID != gone {
			if o != rank[0] {
				t.Fatalf("key %q moved from %s to %s though %s was removed", key, rank[0].ID, o.ID, gone)
			}
			continue
		}
		moved++
		if o != rank[1] {
			t.Fatalf("key %q of removed %s went to %s, want next in rank %s", key, gone, o.ID, rank[1].ID)
		}
	}
	if moved == 0 {
		t.Fatal("removed member owned no keys")
	}
}

func TestAddMemberMovesOnlyToIt(t *testing.T) {
	const keys = 100_000
	ms := testMembers(5)
	added := Member{ID: "node-new", Region: "r1", Addr: "10.0.0.99:7000"}
	after := append(slices.Clone(ms), added)
	moved := 0
	for i := range keys {
		key := testKey(i)
		before, _ := Owner(key, ms)
		now, _ := Owner(key, after)
		if now == before {
			continue
		}
		if now.ID != added.ID {
			t.Fatalf("key %q moved from %s to %s, not to the added member", key, before.ID, now.ID)
		}
		moved++
	}
	want := float64(keys) / float64(len(after))
	if dev := (float64(moved) - want) / want; dev > 0.05 || dev < -0.05 {
		t.Fatalf("adding a 6th member moved %d keys, want about %.0f (%+.1f%%)", moved, want, dev*100)
	}
}

func TestFailoverOrderIsRankWithoutFailed(t *testing.T) {
	ms := testMembers(8)
	for i := range 5000 {
		key := testKey(i)
		rank := Rank(key, ms)
		for _, failed := range []string{rank[0].ID, rank[3].ID, ms[5].ID} {
			if got, want := Rank(key, without(ms, failed)), without(rank, failed); !slices.Equal(got, want) {
				t.Fatalf("key %q without %s: rank %q, want %q", key, failed, ids(got), ids(want))
			}
		}
	}
}

func TestRankIntoDoesNotAllocate(t *testing.T) {
	ms := testMembers(100)
	p := NewPlacement(ms)
	buf := make([]Member, 0, len(ms))
	for name, f := range map[string]func(){
		"RankInto":           func() { buf = RankInto(buf, "/lake/x/y", ms) },
		"Owner":              func() { Owner("/lake/x/y", ms) },
		"Placement.RankInto": func() { buf = p.RankInto(buf, "/lake/x/y") },
		"Placement.Owner":    func() { p.Owner("/lake/x/y") },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s allocates %.1f times per call", name, a)
		}
	}
}

var sinkMember Member

func benchSizes(b *testing.B, f func(b *testing.B, ms []Member, keys []string)) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = testKey(i)
	}
	for _, n := range []int{3, 16, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			f(b, testMembers(n), keys)
		})
	}
}

func BenchmarkOwner(b *testing.B) {
	benchSizes(b, func(b *testing.B, ms []Member, keys []string) {
		i := 0
		for b.Loop() {
			sinkMember, _ = Owner(keys[i%len(keys)], ms)
			i++
		}
	})
}

func BenchmarkRank(b *testing.B) {
	benchSizes(b, func(b *testing.B, ms []Member, keys []string) {
		i := 0
		for b.Loop() {
			sinkMember = Rank(keys[i%len(keys)], ms)[0]
			i++
		}
	})
}

func BenchmarkRankInto(b *testing.B) {
	benchSizes(b, func(b *testing.B, ms []Member, keys []string) {
		buf := make([]Member, 0, len(ms))
		i := 0
		for b.Loop() {
			buf = RankInto(buf, keys[i%len(keys)], ms)
			i++
		}
		sinkMember = buf[0]
	})
}

func BenchmarkPlacementOwner(b *testing.B) {
	benchSizes(b, func(b *testing.B, ms []Member, keys []string) {
		p := NewPlacement(ms)
		i := 0
		for b.Loop() {
			sinkMember, _ = p.Owner(keys[i%len(keys)])
			i++
		}
	})
}

func BenchmarkPlacementRankInto(b *testing.B) {
	benchSizes(b, func(b *testing.B, ms []Member, keys []string) {
		p := NewPlacement(ms)
		buf := make([]Member, 0, len(ms))
		i := 0
		for b.Loop() {
			buf = p.RankInto(buf, keys[i%len(keys)])
			i++
		}
		sinkMember = buf[0]
	})
}

// TestRankTiesIgnoreInputOrder forces the rare case of equal truncated
// scores: the order must come from full score and ID, not input position.
func TestRankTiesIgnoreInputOrder(t *testing.T) {
	ms := testMembers(4)
	kd := keyDigest("k")
	const indexBits = 2
	rank := func(members []Member) []string {
		sc := make([]uint64, len(members))
		for i := range sc {
			sc[i] = 0xabc<<indexBits | uint64(i) // every truncated score equal
		}
		return ids(appendRanked(nil, kd, members, sc, indexBits))
	}
	want := ids(Rank("k", ms))
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	if got := rank(ms); !slices.Equal(got, want) {
		t.Fatalf("tied rank %q, want full-score order %q", got, want)
	}
	if got := rank(rev); !slices.Equal(got, want) {
		t.Fatalf("tied rank of reversed input %q, want %q", got, want)
	}
}
