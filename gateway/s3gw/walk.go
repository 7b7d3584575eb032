package s3gw

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// S3 lists keys in byte order of the whole key. A directory tree walked
// name by name is not in that order: directory "a" holds keys "a/...",
// which sort after "a-b" and "a.txt" ('-' and '.' are below '/'), yet
// "a" sorts before them as a name. The walker therefore orders each
// directory's children by their sort key (the name, or name+"/" for a
// directory) and descends into a directory at its sort key's place; keys
// below a directory are contiguous in S3 order, so the walk emits keys
// in exactly S3's order.
//
// Namespace.List pages come in the lake's order (names for file:// and
// hdfs://, keys with "a/" after "a-b" for s3://). Either way no child to
// come has a sort key below the greatest name read so far, so a child
// waits in a small heap only until the listing has passed its sort key:
// files go out at once, and a directory waits just for the siblings that
// extend its name with a byte below '/'. Memory is a page per directory
// level plus those waiting directories, never the whole listing.
//
// A position in the walk is the last key emitted (after) plus, per
// directory level on its path, the List token of the earliest page that
// still holds a child not done. Resuming lists each level from its page
// and skips what sorts at or before after, so a continuation token costs
// the pages it resumes in, not a re-listing from the start.

// listPageSize is the page size the walker asks List for.
const listPageSize = 1000

// maxWalkDepth bounds the directory levels of a walk (a 1024-byte key has
// at most 512).
const maxWalkDepth = 600

// maxWaiting bounds the directories one level holds back; past it the
// directory is too irregular to list in order with bounded memory.
const maxWaiting = 100_000

// listSpec says what to list and where to start.
type listSpec struct {
	root      string // bucket path, e.g. /lake/a
	prefix    string
	delimiter string
	after     string      // list only keys after this one
	afterAll  bool        // and not those starting with after (a common prefix already listed)
	resume    []levelMark // optional: where each level along after's path resumes
}

// levelMark is where a directory level resumes: the token of a page of its
// listing, or done.
type levelMark struct {
	Token string `json:"t,omitempty"`
	Done  bool   `json:"d,omitempty"`
}

// listItem is a key or a common prefix.
type listItem struct {
	key    string
	entry  router.Entry // zero for a common prefix
	prefix bool         // a common prefix
}

type walker struct {
	ns    router.Namespace
	spec  listSpec
	after string // the last item emitted (or spec.after)
	all   bool   // ... and everything below it (a common prefix)
	stack []*level
}

// level is one directory being listed.
type level struct {
	dir     string       // key prefix: "" for the bucket root, else "a/b/"
	entry   router.Entry // the directory itself (zero for the first level)
	filter  string       // names must start with this (first level only)
	next    string       // token of the next page
	done    bool         // no pages left
	exists  bool         // a List of the directory succeeded
	seen    bool         // the directory has children (it is not an empty one)
	mark    string       // greatest name read: nothing to come sorts before it
	page    int          // pages read
	waiting childHeap
	inside  *child // the directory being walked below this level
}

// child is a directory entry waiting for its turn.
type child struct {
	sort  string // name, or name+"/" for a directory
	name  string
	entry router.Entry
	page  int    // the page it came from
	token string // the token that listed that page
}

type childHeap []child

func (h childHeap) Len() int           { return len(h) }
func (h childHeap) Less(i, j int) bool { return h[i].sort < h[j].sort }
func (h childHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *childHeap) Push(x any)        { *h = append(*h, x.(child)) }
func (h *childHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

func newWalker(ns router.Namespace, spec listSpec) *walker {
	cut := strings.LastIndexByte(spec.prefix, '/') + 1
	first := &level{dir: spec.prefix[:cut], filter: spec.prefix[cut:]}
	w := &walker{ns: ns, spec: spec, after: spec.after, all: spec.afterAll, stack: []*level{first}}
	if len(spec.resume) > 0 {
		w.resumeAt(first, spec.resume[0])
	}
	return w
}

func (w *walker) resumeAt(l *level, m levelMark) {
	l.next, l.done, l.exists, l.seen = m.Token, m.Done, true, true
}

// next returns the next item in S3 order; ok is false at the end.
func (w *walker) next(ctx context.Context) (item listItem, ok bool, err error) {
	for len(w.stack) > 0 {
		l := w.stack[len(w.stack)-1]
		c, ok, err := w.pop(ctx, l)
		if err != nil {
			return listItem{}, false, err
		}
		if !ok {
			w.stack = w.stack[:len(w.stack)-1]
			if n := len(w.stack); n > 0 {
				w.stack[n-1].inside = nil
			}
			// An empty directory is the key "d/" (as a marker object
			// would be in S3); the bucket root is no key.
			if l.exists && !l.seen && l.dir != "" && strings.HasPrefix(l.dir, w.spec.prefix) {
				e := l.entry
				e.IsDir = true
				if it, ok := w.emit(l.dir, e); ok {
					return it, true, nil
				}
			}
			continue
		}
		key := l.dir + c.name
		if !c.entry.IsDir {
			if it, ok := w.emit(key, c.entry); ok {
				return it, true, nil
			}
			continue
		}
		sub := key + "/"
		switch w.subtree(sub) {
		case subtreeDone:
			continue
		case subtreeNew:
			// Every key below sub rolls up into one common prefix when
			// the delimiter occurs in sub itself: no need to walk it.
			if cp := w.commonPrefix(sub); cp != "" {
				w.after, w.all = cp, true
				return listItem{key: cp, prefix: true}, true, nil
			}
		}
		if len(w.stack) >= maxWalkDepth {
			return listItem{}, false, fmt.Errorf("list %s: more than %d directory levels", w.spec.root, maxWalkDepth)
		}
		cc := c
		l.inside = &cc
		below := &level{dir: sub, entry: c.entry}
		if strings.HasPrefix(w.after, sub) && len(w.spec.resume) > len(w.stack) {
			w.resumeAt(below, w.spec.resume[len(w.stack)])
		}
		w.stack = append(w.stack, below)
	}
	return listItem{}, false, nil
}

// emit returns the item for a key, or ok false when the position already
// covers it. With a delimiter the key may roll up into a common prefix.
func (w *walker) emit(key string, e router.Entry) (listItem, bool) {
	if key <= w.after || w.all && strings.HasPrefix(key, w.after) {
		return listItem{}, false
	}
	if cp := w.commonPrefix(key); cp != "" {
		w.after, w.all = cp, true
		return listItem{key: cp, prefix: true}, true
	}
	w.after, w.all = key, false
	return listItem{key: key, entry: e}, true
}

// commonPrefix is the common prefix key rolls up into, "" if none: the
// key up to the first delimiter after the listing prefix.
func (w *walker) commonPrefix(key string) string {
	d := w.spec.delimiter
	if d == "" || !strings.HasPrefix(key, w.spec.prefix) {
		return ""
	}
	i := strings.Index(key[len(w.spec.prefix):], d)
	if i < 0 {
		return ""
	}
	return key[:len(w.spec.prefix)+i+len(d)]
}

type subtreeState int

const (
	subtreeNew     subtreeState = iota // no key below is covered yet
	subtreePartial                     // the position is inside it
	subtreeDone                        // every key below is covered
)

// subtree says how much of the keys below sub ("a/b/") the position
// covers.
func (w *walker) subtree(sub string) subtreeState {
	switch {
	case w.all && strings.HasPrefix(sub, w.after):
		return subtreeDone
	case strings.HasPrefix(w.after, sub):
		return subtreePartial
	case sub < w.after:
		// after does not start with sub, so they differ within sub, and
		// every key below sub sorts before after.
		return subtreeDone
	}
	return subtreeNew
}

// pop returns the level's next child in sort order, reading pages until
// no child to come can sort before it.
func (w *walker) pop(ctx context.Context, l *level) (child, bool, error) {
	for {
		if len(l.waiting) > 0 && (l.done || l.waiting[0].sort <= l.mark) {
			return heap.Pop(&l.waiting).(child), true, nil
		}
		if l.done {
			return child{}, false, nil
		}
		if err := w.readPage(ctx, l); err != nil {
			return child{}, false, err
		}
	}
}

// readPage lists one page of a level into its heap, leaving out children
// the position already covers.
func (w *walker) readPage(ctx context.Context, l *level) error {
	dirPath := w.spec.root
	if l.dir != "" {
		dirPath += "/" + strings.TrimSuffix(l.dir, "/")
	}
	token := l.next
	entries, next, err := w.ns.List(ctx, dirPath, token, listPageSize)
	if err != nil {
		// A directory that is not there (or is a file) has no keys: the
		// prefix names nothing, or the directory went away meanwhile.
		if errors.Is(err, ufs.ErrNotFound) || errors.Is(err, ufs.ErrNotDir) {
			l.done = true
			return nil
		}
		return err
	}
	l.page++
	l.exists = true
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Path, dirPath+"/")
		if !ok || name == "" || strings.Contains(name, "/") {
			continue
		}
		l.seen = true
		l.mark = max(l.mark, name)
		if !strings.HasPrefix(name, l.filter) || !utf8.ValidString(name) {
			continue // S3 keys are UTF-8: a name that is not has no key
		}
		c := child{sort: name, name: name, entry: e, page: l.page, token: token}
		if e.IsDir {
			c.sort += "/"
			if w.subtree(l.dir+c.sort) == subtreeDone {
				continue
			}
		} else if key := l.dir + name; key <= w.after || w.all && strings.HasPrefix(key, w.after) {
			continue
		}
		if len(l.waiting) >= maxWaiting {
			return fmt.Errorf("list %s: more than %d directories wait for their turn in key order", dirPath, maxWaiting)
		}
		heap.Push(&l.waiting, c)
	}
	l.next, l.done = next, next == ""
	return nil
}

// position is where the walk stands after the last item it emitted: one
// mark per level on the path of that item.
func (w *walker) position() []levelMark {
	marks := make([]levelMark, len(w.stack))
	for i, l := range w.stack {
		marks[i] = l.resumeMark()
	}
	return marks
}

// resumeMark is the earliest page of the level that holds a child not
// done yet: waiting, or being walked below.
func (l *level) resumeMark() levelMark {
	best, token := -1, ""
	consider := func(c child) {
		if best < 0 || c.page < best {
			best, token = c.page, c.token
		}
	}
	for _, c := range l.waiting {
		consider(c)
	}
	if l.inside != nil {
		consider(*l.inside)
	}
	switch {
	case best >= 0:
		return levelMark{Token: token}
	case l.done:
		return levelMark{Done: true}
	}
	return levelMark{Token: l.next}
}
