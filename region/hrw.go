package region

import (
	"cmp"
	"math/bits"
	"slices"
)

// Rendezvous (highest random weight) placement. Every member gets a score
// for a key, score(key, member) = mix64(digest(key) ^ digest(member.ID));
// the member with the highest score owns the key and the rest, by falling
// score, are the failover order. The digests are 64-bit FNV-1a passed
// through a murmur3-style finalizer, so the score is the same in every
// process, on every platform and in every release: placement must never
// depend on a random seed (hash/maphash) or on map iteration order. Changing
// digest or mix64 moves every key in every deployed region; treat them as a
// wire format.

// Owner returns the member that owns key among members, or false when
// members is empty. It does not allocate. Here and below, member IDs must
// be distinct, as every Membership guarantees.
func Owner(key string, members []Member) (Member, bool) {
	if len(members) == 0 {
		return Member{}, false
	}
	kd := keyDigest(key)
	best, bestScore := 0, score(kd, memberDigest(members[0].ID))
	for i := 1; i < len(members); i++ {
		s := score(kd, memberDigest(members[i].ID))
		if better(s, members[i].ID, bestScore, members[best].ID) {
			best, bestScore = i, s
		}
	}
	return members[best], true
}

// Rank returns all members ordered for key, best first: the owner, then the
// order in which to fail over. Rank without a failed member is exactly Rank
// with that member removed, which is what makes failover stable.
func Rank(key string, members []Member) []Member {
	return RankInto(make([]Member, 0, len(members)), key, members)
}

// RankInto is Rank writing into dst's storage: it returns dst[:0] extended
// with the ranking. It allocates nothing when cap(dst) >= len(members) and
// len(members) <= 128, so a caller on the read path can keep one buffer.
// dst must not overlap members.
func RankInto(dst []Member, key string, members []Member) []Member {
	kd := keyDigest(key)
	var buf [stackRank]uint64
	sc, indexBits := scratch(&buf, len(members))
	for i := range members {
		sc[i] = pack(score(kd, memberDigest(members[i].ID)), i, indexBits)
	}
	return appendRanked(dst[:0], kd, members, sc, indexBits)
}

// Placement is Rank and Owner over a fixed member set with the member
// digests computed once, for callers that place many keys on the same set
// (rebuild it when Membership.Changed fires). It gives the same answers as
// the package functions; it is immutable and safe for concurrent use.
type Placement struct {
	members []Member
	digests []uint64
}

// NewPlacement returns a Placement over a copy of members.
func NewPlacement(members []Member) *Placement {
	p := &Placement{
		members: slices.Clone(members),
		digests: make([]uint64, len(members)),
	}
	for i, m := range p.members {
		p.digests[i] = memberDigest(m.ID)
	}
	return p
}

// Members returns the set the placement was built from; do not modify it.
func (p *Placement) Members() []Member { return p.members }

// Owner is Owner(key, p.Members()). It does not allocate.
func (p *Placement) Owner(key string) (Member, bool) {
	if len(p.members) == 0 {
		return Member{}, false
	}
	kd := keyDigest(key)
	best, bestScore := 0, score(kd, p.digests[0])
	for i := 1; i < len(p.members); i++ {
		s := score(kd, p.digests[i])
		if better(s, p.members[i].ID, bestScore, p.members[best].ID) {
			best, bestScore = i, s
		}
	}
	return p.members[best], true
}

// RankInto is RankInto(dst, key, p.Members()).
func (p *Placement) RankInto(dst []Member, key string) []Member {
	kd := keyDigest(key)
	var buf [stackRank]uint64
	sc, indexBits := scratch(&buf, len(p.members))
	for i, d := range p.digests {
		sc[i] = pack(score(kd, d), i, indexBits)
	}
	return appendRanked(dst[:0], kd, p.members, sc, indexBits)
}

// Ranking sorts plain uint64s, each the complement of a score with the
// member's index in the low bits, so that an ascending sort of integers
// (no comparison callback) yields falling scores. Packing drops the low
// bits of the score; members whose truncated scores tie are re-ordered by
// full score, then ID, so the result never depends on input order.

// stackRank is how many members RankInto ranks without a heap allocation.
const stackRank = 128

func scratch(buf *[stackRank]uint64, n int) (sc []uint64, indexBits uint) {
	indexBits = uint(bits.Len(uint(max(n-1, 1))))
	if n <= len(buf) {
		return buf[:n], indexBits
	}
	return make([]uint64, n), indexBits
}

func pack(score uint64, index int, indexBits uint) uint64 {
	return (^score)>>indexBits<<indexBits | uint64(index)
}

func appendRanked(dst []Member, kd uint64, members []Member, sc []uint64, indexBits uint) []Member {
	slices.Sort(sc)
	mask := uint64(1)<<indexBits - 1
	for i := 0; i < len(sc); {
		j := i + 1
		for j < len(sc) && sc[j]&^mask == sc[i]&^mask {
			j++
		}
		if j-i > 1 {
			breakTies(sc[i:j], kd, members, mask)
		}
		i = j
	}
	for _, v := range sc {
		dst = append(dst, members[v&mask])
	}
	return dst
}

// breakTies orders a run of equal truncated scores by full score, falling,
// then by member ID.
func breakTies(run []uint64, kd uint64, members []Member, mask uint64) {
	slices.SortFunc(run, func(a, b uint64) int {
		ma, mb := members[a&mask], members[b&mask]
		sa, sb := score(kd, memberDigest(ma.ID)), score(kd, memberDigest(mb.ID))
		if sa != sb {
			return cmp.Compare(sb, sa)
		}
		return cmp.Compare(ma.ID, mb.ID)
	})
}

func better(s uint64, id string, bestScore uint64, bestID string) bool {
	return s > bestScore || (s == bestScore && id < bestID)
}

func score(keyDigest, memberDigest uint64) uint64 {
	return mix64(keyDigest ^ memberDigest)
}

// keyDigest and memberDigest use different FNV offsets so that a key equal
// to a member ID does not score zero-before-mixing against that member.
func keyDigest(key string) uint64 { return mix64(fnv1a(fnvOffset, key)) }

func memberDigest(id string) uint64 { return mix64(fnv1a(fnvOffset^memberSalt, id)) }

const (
	fnvOffset  = 14695981039346656037
	fnvPrime   = 1099511628211
	memberSalt = 0x9e3779b97f4a7c15 // golden ratio; any fixed odd constant
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is the murmur3 fmix64 finalizer: every input bit flips each output
// bit with probability close to 1/2, which FNV alone does not give.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
