package s3gw

import (
	"bytes"
	"encoding/base64"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// objectChecksum is the whole object's checksum that a
// CompleteMultipartUpload names in an x-amz-checksum-<algorithm> header,
// of one of two kinds (x-amz-checksum-type; with none, either is taken):
// FULL_OBJECT, the checksum of all the object's bytes, or COMPOSITE, the
// checksum of the concatenated checksums of its parts, in order, written
// "<base64>-<number of parts>" (the suffix is optional). The completion
// computes both while it streams the parts into the lake and fails,
// writing nothing, when the one asked for does not match.
type objectChecksum struct {
	checksumHeader
	want  []byte
	parts int    // the value's part count; 0 when it names none
	kind  string // "FULL_OBJECT", "COMPOSITE" or "" (either)
}

// parseObjectChecksum returns the object checksum h names, or nil.
func parseObjectChecksum(h http.Header) (*objectChecksum, *apiError) {
	sums, aerr := checksumHeaders(h)
	switch {
	case aerr != nil:
		return nil, aerr
	case len(sums) == 0:
		return nil, nil
	case len(sums) > 1:
		return nil, s3err("InvalidRequest", "a CompleteMultipartUpload names one object checksum; it has %s and %s", sums[0].header, sums[1].header)
	}
	c := sums[0]
	value, count, hasCount := strings.Cut(c.value, "-")
	want, aerr := c.digest(value)
	if aerr != nil {
		return nil, aerr
	}
	oc := &objectChecksum{checksumHeader: c, want: want}
	if hasCount {
		var err error
		if oc.parts, err = strconv.Atoi(count); err != nil || oc.parts < 1 {
			return nil, s3err("InvalidArgument", "%s: %q is not a part count", c.header, count)
		}
	}
	switch t := strings.ToUpper(strings.TrimSpace(h.Get("X-Amz-Checksum-Type"))); t {
	case "", "FULL_OBJECT", "COMPOSITE":
		oc.kind = t
	default:
		return nil, s3err("InvalidArgument", "x-amz-checksum-type %q is neither FULL_OBJECT nor COMPOSITE", truncate(t, 32))
	}
	if oc.kind == "FULL_OBJECT" && oc.parts > 0 {
		return nil, s3err("InvalidArgument", "a FULL_OBJECT checksum names no part count")
	}
	return oc, nil
}

// checksummedParts reads an upload's parts (sizes gives their lengths, in
// order) through to the object's Put, computing c both ways, and fails
// at the end, instead of returning io.EOF, when it does not match.
type checksummedParts struct {
	r     io.Reader
	c     *objectChecksum
	sizes []int64
	full  hash.Hash
	part  hash.Hash
	cur   int    // the part being read
	left  int64  // its bytes not read yet
	sums  []byte // the checksums of the parts before it
	kind  string // the kind that matched, once the parts ended
}

func newChecksummedParts(r io.Reader, c *objectChecksum, sizes []int64) *checksummedParts {
	p := &checksummedParts{r: r, c: c, sizes: sizes, full: c.newHash(), part: c.newHash()}
	if len(sizes) > 0 {
		p.left = sizes[0]
	}
	p.advance()
	return p
}

func (p *checksummedParts) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.full.Write(b[:n])
	for rest := b[:n]; len(rest) > 0 && p.cur < len(p.sizes); {
		k := min(int64(len(rest)), p.left)
		p.part.Write(rest[:k])
		p.left -= k
		rest = rest[k:]
		p.advance()
	}
	if err == io.EOF {
		if aerr := p.verify(); aerr != nil {
			return n, aerr
		}
	}
	return n, err
}

// advance closes each part read whole (an empty one at once) and moves
// to the next.
func (p *checksummedParts) advance() {
	for p.cur < len(p.sizes) && p.left == 0 {
		p.sums = p.part.Sum(p.sums)
		p.part.Reset()
		p.cur++
		if p.cur < len(p.sizes) {
			p.left = p.sizes[p.cur]
		}
	}
}

func (p *checksummedParts) verify() *apiError {
	c := p.c
	if c.kind != "COMPOSITE" && c.parts == 0 && bytes.Equal(p.full.Sum(nil), c.want) {
		p.kind = "FULL_OBJECT"
		return nil
	}
	composite := c.newHash()
	composite.Write(p.sums)
	if c.kind != "FULL_OBJECT" && (c.parts == 0 || c.parts == len(p.sizes)) && bytes.Equal(composite.Sum(nil), c.want) {
		p.kind = "COMPOSITE"
		return nil
	}
	return s3err("BadDigest", "the %s you specified did not match the object's", c.header)
}

// value is the checksum as a reply states it: a composite one with its
// part count.
func (p *checksummedParts) value() string {
	v := base64.StdEncoding.EncodeToString(p.c.want)
	if p.kind == "COMPOSITE" {
		v += "-" + strconv.Itoa(len(p.sizes))
	}
	return v
}
