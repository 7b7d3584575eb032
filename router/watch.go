package router

import (
	"context"
	"sync"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/region"
)

// Change is what a node of the region was told changed by the client
// that changed it.
type Change struct {
	// Paths are files and directories written, removed, renamed or made.
	Paths []string
	// Dirs are directories whose own listing changed (a directory
	// appeared or went below them).
	Dirs []string
	// Below, when set, says everything at and below it may have changed
	// (lakemesh sync).
	Below string
	// Lost says changes may have been missed: a node's stream broke or
	// fell behind, so anything cached may be stale.
	Lost bool
}

// Watcher is implemented by namespaces that tell of the changes made in
// their region (Client does). A front end that caches what it learns
// (the FUSE mount, whose kernel caches entries, attributes and pages for
// the metadata TTL) drops it at once instead.
type Watcher interface {
	// WatchChanges calls fn with each change, one call at a time, until
	// ctx is done. It returns once the watch is in place on every member
	// that answered within a few seconds, and keeps it in place on the
	// members that come and go.
	WatchChanges(ctx context.Context, fn func(Change))
}

var _ Watcher = (*Client)(nil)

// watchRetry is how long a broken watch waits before it is opened again,
// and watchReady how long WatchChanges waits for the members' watches to
// be in place.
const (
	watchRetry = time.Second
	watchReady = 5 * time.Second
)

// WatchChanges watches every member of the region (Watcher). Changes a
// client makes are told to the node of the changed path's directory, so
// watching them all hears every change made through lakemesh in the
// region, except this client's own, which its caller made and knows of;
// a change made in the lake directly is seen after the TTL, as before.
func (c *Client) WatchChanges(ctx context.Context, fn func(Change)) {
	var mu sync.Mutex // one call of fn at a time
	call := func(ch Change) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			fn(ch)
		}
	}
	started := make(chan struct{}, 64)
	watching := map[string]context.CancelFunc{}
	resync := func() (n int) {
		now := map[string]bool{}
		for _, m := range c.cfg.Members.Members() {
			now[m.Addr] = true
			if watching[m.Addr] == nil {
				wctx, cancel := context.WithCancel(ctx)
				watching[m.Addr] = cancel
				go c.watchMember(wctx, m, call, started)
				n++
			}
		}
		for addr, cancel := range watching {
			if !now[addr] {
				cancel()
				delete(watching, addr)
			}
		}
		return n
	}
	changed := c.cfg.Members.Changed()
	first := resync()
	timeout := time.After(watchReady)
wait:
	for range first {
		select {
		case <-started:
		case <-timeout:
			break wait // the members that did not answer are watched once they do
		case <-ctx.Done():
			break wait
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-started:
			case <-changed:
				changed = c.cfg.Members.Changed()
				resync()
			}
		}
	}()
}

// watchMember keeps a watch open on one member until ctx is done. Once a
// watch that was in place breaks, changes may have been missed: fn is
// told so (Lost) when it is in place again.
func (c *Client) watchMember(ctx context.Context, m region.Member, fn func(Change), started chan<- struct{}) {
	first, broke := true, false
	for ctx.Err() == nil {
		in, err := c.openWatch(ctx, m)
		if err == nil {
			if first {
				select {
				case started <- struct{}{}:
				case <-ctx.Done():
				}
				first = false
			}
			if broke {
				fn(Change{Lost: true})
			}
			for {
				var ch *nodepb.Change
				if ch, err = in.Recv(); err != nil {
					break
				}
				if ch.GetOrigin() == c.origin && !ch.GetLost() {
					continue // this client's own change: its caller knows
				}
				fn(Change{Paths: ch.GetPaths(), Dirs: ch.GetDirs(), Below: ch.GetBelow(), Lost: ch.GetLost()})
			}
			broke = true
		}
		if ctx.Err() == nil {
			c.log.Debug("watch of a node broke; opening it again", "node", m.Addr, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(watchRetry):
		}
	}
}

// openWatch opens a Watch stream on m and waits for the node's first
// message, which says the watch is in place.
func (c *Client) openWatch(ctx context.Context, m region.Member) (nodepb.Node_WatchClient, error) {
	nc, err := c.node(m.Addr)
	if err != nil {
		return nil, err
	}
	in, err := nc.Watch(ctx, &nodepb.WatchRequest{})
	if err != nil {
		return nil, err
	}
	if _, err := in.Recv(); err != nil {
		return nil, err
	}
	return in, nil
}
