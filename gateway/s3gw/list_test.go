package s3gw

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// treeNS is a Namespace of one bucket at /b whose files are a set of keys.
// It lists in name order (file://, hdfs://) or in key order with
// directories at name+"/" (s3://), in pages of pageSize, with tokens
// that are indexes.
type treeNS struct {
	router.Namespace // only List is used
	keys             map[string]bool
	s3Order          bool
	pageSize         int
	listed           atomic.Int64 // entries returned, all calls
}

func newTreeNS(keys []string, s3Order bool, pageSize int) *treeNS {
	ns := &treeNS{keys: map[string]bool{}, s3Order: s3Order, pageSize: pageSize}
	for _, k := range keys {
		ns.keys[k] = true
	}
	return ns
}

func (ns *treeNS) List(_ context.Context, dir, token string, _ int) ([]router.Entry, string, error) {
	rel, ok := strings.CutPrefix(dir, "/b")
	if !ok {
		return nil, "", ufs.ErrNotFound
	}
	rel = strings.TrimPrefix(rel, "/")
	prefix := ""
	if rel != "" {
		prefix = rel + "/"
	}
	children := map[string]bool{} // name -> is a directory
	for k := range ns.keys {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		name, _, isDir := strings.Cut(rest, "/")
		children[name] = children[name] || isDir
		if k == rel {
			return nil, "", ufs.ErrNotDir
		}
	}
	if len(children) == 0 {
		return nil, "", ufs.ErrNotFound
	}
	var entries []router.Entry
	for name, isDir := range children {
		entries = append(entries, router.Entry{Path: dir + "/" + name, IsDir: isDir, Version: "v", Size: 1})
	}
	sortKey := func(e router.Entry) string {
		if ns.s3Order && e.IsDir {
			return e.Name() + "/"
		}
		return e.Name()
	}
	sort.Slice(entries, func(i, j int) bool { return sortKey(entries[i]) < sortKey(entries[j]) })
	start := 0
	if token != "" {
		start, _ = strconv.Atoi(token)
	}
	end := min(start+ns.pageSize, len(entries))
	next := ""
	if end < len(entries) {
		next = strconv.Itoa(end)
	}
	ns.listed.Add(int64(end - start))
	return entries[start:end], next, nil
}

// referenceList is S3's listing semantics over a sorted key list.
func referenceList(keys []string, prefix, delimiter string) []string {
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	var out []string
	for _, k := range sorted {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if delimiter != "" {
			if i := strings.Index(k[len(prefix):], delimiter); i >= 0 {
				cp := k[:len(prefix)+i+len(delimiter)] + " (prefix)"
				if len(out) == 0 || out[len(out)-1] != cp {
					out = append(out, cp)
				}
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

func itemString(it listItem) string {
	if it.prefix {
		return it.key + " (prefix)"
	}
	return it.key
}

// walkAll lists everything in pages of maxKeys, resuming from each page's
// position as a continuation token would.
func walkAll(t *testing.T, ns router.Namespace, prefix, delimiter string, maxKeys int) []string {
	t.Helper()
	s := &Server{ns: ns}
	spec := listSpec{root: "/b", prefix: prefix, delimiter: delimiter}
	var out []string
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("listing does not end")
		}
		items, truncated, marks, err := s.list(context.Background(), spec, maxKeys)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			out = append(out, itemString(it))
		}
		if !truncated {
			return out
		}
		last := items[len(items)-1]
		spec.after, spec.afterAll, spec.resume = last.key, last.prefix, marks
	}
}

// trickyKeys are keys whose directory order differs from key order.
var trickyKeys = []string{
	"a-b", "a.txt", "a/b", "a/c/d", "a/c-d", "a/c.e/f", "a0", "a!", "a /x", "a//", "b",
	"a/b-", "a/b0", "aa/x", "a-/y", "z/z/z/z", "z/z-", "z/z.", "z/z0/q", "日本/語", "日/本",
}

func TestWalkOrder(t *testing.T) {
	keys := slices.DeleteFunc(slices.Clone(trickyKeys), func(k string) bool { return strings.Contains(k, "//") })
	for _, s3Order := range []bool{false, true} {
		for _, pageSize := range []int{1, 2, 3, 1000} {
			ns := newTreeNS(keys, s3Order, pageSize)
			for _, q := range []struct{ prefix, delimiter string }{
				{"", ""}, {"", "/"}, {"a", ""}, {"a", "/"}, {"a/", "/"}, {"a/c", ""}, {"a/c", "/"},
				{"", "-"}, {"", "a/"}, {"z/z", "/"}, {"z/", "z"}, {"nothing", ""}, {"a/b/", ""},
			} {
				want := referenceList(keys, q.prefix, q.delimiter)
				for _, maxKeys := range []int{1, 2, 3, 1000} {
					got := walkAll(t, ns, q.prefix, q.delimiter, maxKeys)
					if !slices.Equal(got, want) {
						t.Errorf("s3Order=%v page=%d prefix=%q delimiter=%q max-keys=%d:\n got %q\nwant %q",
							s3Order, pageSize, q.prefix, q.delimiter, maxKeys, got, want)
					}
				}
			}
		}
	}
}

// TestWalkRandomTrees compares the walk with S3's order on random trees.
func TestWalkRandomTrees(t *testing.T) {
	alphabet := []string{"a", "b", "-", ".", "0", " ", "!", "~", "é"}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 40; round++ {
		set := map[string]bool{}
		for len(set) < 60 {
			var els []string
			for d := rng.IntN(4); d >= 0; d-- {
				var name string
				for l := 1 + rng.IntN(3); l > 0; l-- {
					name += alphabet[rng.IntN(len(alphabet))]
				}
				els = append(els, name)
			}
			set[strings.Join(els, "/")] = true
		}
		// A key that is also a prefix of another key is a directory in a
		// lake: drop such files.
		var keys []string
		for k := range set {
			dir := false
			for o := range set {
				dir = dir || strings.HasPrefix(o, k+"/")
			}
			if !dir {
				keys = append(keys, k)
			}
		}
		ns := newTreeNS(keys, round%2 == 1, 1+rng.IntN(4))
		for _, q := range []struct{ prefix, delimiter string }{{"", ""}, {"", "/"}, {"a", ""}, {"a", "/"}, {"", "-"}} {
			want := referenceList(keys, q.prefix, q.delimiter)
			got := walkAll(t, ns, q.prefix, q.delimiter, 1+rng.IntN(7))
			if !slices.Equal(got, want) {
				t.Fatalf("round %d prefix=%q delimiter=%q:\n got %q\nwant %q", round, q.prefix, q.delimiter, got, want)
			}
		}
	}
}

// TestWalkResumeCost checks that a continuation resumes at its page: a
// flat listing of 2,500 keys in pages of 1,000 lists each entry about
// once, not once per page before it.
func TestWalkResumeCost(t *testing.T) {
	var keys []string
	for i := 0; i < 2500; i++ {
		keys = append(keys, fmt.Sprintf("k%05d", i))
	}
	ns := newTreeNS(keys, false, 1000)
	got := walkAll(t, ns, "", "", 1000)
	if len(got) != 2500 {
		t.Fatalf("listed %d keys", len(got))
	}
	if n := ns.listed.Load(); n > 2500+2*1000 {
		t.Errorf("listing 2,500 keys in 3 pages read %d entries; resuming re-reads from the start", n)
	}
}

// listAll lists a bucket through the SDK's paginator.
func listAll(t *testing.T, c *s3.Client, bucket, prefix, delimiter string) []string {
	t.Helper()
	return listPages(t, c, bucket, prefix, delimiter, 1000)
}

func listPages(t *testing.T, c *s3.Client, bucket, prefix, delimiter string, maxKeys int32) []string {
	t.Helper()
	var out []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket), Prefix: aws.String(prefix), Delimiter: aws.String(delimiter), MaxKeys: aws.Int32(maxKeys),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n := len(page.Contents) + len(page.CommonPrefixes); n > int(maxKeys) {
			t.Fatalf("page of %d items with max-keys %d", n, maxKeys)
		}
		// Merge the page's keys and prefixes in order.
		var items []string
		for _, o := range page.Contents {
			items = append(items, aws.ToString(o.Key))
		}
		for _, cp := range page.CommonPrefixes {
			items = append(items, aws.ToString(cp.Prefix)+" (prefix)")
		}
		sort.Slice(items, func(i, j int) bool {
			return strings.TrimSuffix(items[i], " (prefix)") < strings.TrimSuffix(items[j], " (prefix)")
		})
		out = append(out, items...)
	}
	return out
}

func listV1Pages(t *testing.T, c *s3.Client, bucket, prefix, delimiter string, maxKeys int32) []string {
	t.Helper()
	var out []string
	marker := ""
	for {
		page, err := c.ListObjects(context.Background(), &s3.ListObjectsInput{
			Bucket: aws.String(bucket), Prefix: aws.String(prefix), Delimiter: aws.String(delimiter), MaxKeys: aws.Int32(maxKeys), Marker: aws.String(marker),
		})
		if err != nil {
			t.Fatal(err)
		}
		var items []string
		for _, o := range page.Contents {
			items = append(items, aws.ToString(o.Key))
		}
		for _, cp := range page.CommonPrefixes {
			items = append(items, aws.ToString(cp.Prefix)+" (prefix)")
		}
		sort.Slice(items, func(i, j int) bool {
			return strings.TrimSuffix(items[i], " (prefix)") < strings.TrimSuffix(items[j], " (prefix)")
		})
		out = append(out, items...)
		if !aws.ToBool(page.IsTruncated) {
			return out
		}
		marker = aws.ToString(page.NextMarker)
	}
}

// writeKeys makes files straight in a lake's directory (faster than 2,500
// PUTs; the listing is what is under test).
func writeKeys(t *testing.T, dir string, keys []string) {
	t.Helper()
	for _, k := range keys {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListObjectsPagination(t *testing.T) {
	g := newTestGateway(t)
	var flat, nested []string
	for i := 0; i < 2500; i++ {
		flat = append(flat, fmt.Sprintf("flat/k%04d", i))
		nested = append(nested, fmt.Sprintf("nested/d%02d/f%03d", i/100, i%100))
	}
	writeKeys(t, g.lakes.Dir("/lake/a"), append(slices.Clone(flat), nested...))
	for _, tc := range []struct {
		prefix, delimiter string
		keys              []string
	}{
		{"flat/", "", flat},
		{"flat/", "/", flat},
		{"nested/", "", nested},
		{"nested/", "/", nested},
		{"nested/d1", "", nested},
		{"", "/", append(slices.Clone(flat), nested...)},
	} {
		want := referenceList(tc.keys, tc.prefix, tc.delimiter)
		for _, maxKeys := range []int32{1000, 7} {
			if maxKeys == 7 && len(want) > 300 {
				continue
			}
			if got := listPages(t, g.client, "a", tc.prefix, tc.delimiter, maxKeys); !slices.Equal(got, want) {
				t.Errorf("V2 prefix=%q delimiter=%q max-keys=%d: %d items, want %d (first %q, want %q)",
					tc.prefix, tc.delimiter, maxKeys, len(got), len(want), first(got), first(want))
			}
		}
		if got := listV1Pages(t, g.client, "a", tc.prefix, tc.delimiter, 1000); !slices.Equal(got, want) {
			t.Errorf("V1 prefix=%q delimiter=%q: %d items, want %d", tc.prefix, tc.delimiter, len(got), len(want))
		}
	}
	// start-after.
	out, err := g.client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("a"), Prefix: aws.String("flat/"), StartAfter: aws.String("flat/k2497")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 2 || aws.ToString(out.Contents[0].Key) != "flat/k2498" {
		t.Errorf("start-after: %d keys", len(out.Contents))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func TestListOrderThroughGateway(t *testing.T) {
	g := newTestGateway(t)
	keys := slices.DeleteFunc(slices.Clone(trickyKeys), func(k string) bool { return strings.Contains(k, "//") })
	for _, k := range keys {
		g.put(k, []byte(k))
	}
	for _, q := range []struct{ prefix, delimiter string }{{"", ""}, {"", "/"}, {"a/", "/"}, {"a", ""}} {
		want := referenceList(keys, q.prefix, q.delimiter)
		for _, maxKeys := range []int32{1000, 1, 3} {
			if got := listPages(t, g.client, "a", q.prefix, q.delimiter, maxKeys); !slices.Equal(got, want) {
				t.Errorf("prefix=%q delimiter=%q max-keys=%d:\n got %q\nwant %q", q.prefix, q.delimiter, maxKeys, got, want)
			}
		}
	}
	// encoding-type=url, as awscli asks.
	resp := signedGet(t, g.ts.URL+"/a?list-type=2&prefix=%E6%97%A5&encoding-type=url")
	if !strings.Contains(resp, "<Key>%E6%97%A5/%E6%9C%AC</Key>") || !strings.Contains(resp, "<EncodingType>url</EncodingType>") {
		t.Errorf("encoding-type=url reply:\n%s", resp)
	}
	// A token of another listing is refused.
	out, err := g.client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("a"), MaxKeys: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("a"), Prefix: aws.String("z"), ContinuationToken: out.NextContinuationToken})
	wantAPIError(t, err, "InvalidArgument", 400)
	_, err = g.client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("a"), ContinuationToken: aws.String("garbage")})
	wantAPIError(t, err, "InvalidArgument", 400)
}

func signedGet(t *testing.T, url string) string {
	t.Helper()
	req := signedRequest(t, url, "GET", "", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
