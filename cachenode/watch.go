package cachenode

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// watchQueue is how many changes a watcher may be behind before it is
// dropped (sent lost): a front end that cannot keep up resets what it
// cached instead of holding the node's memory.
const watchQueue = 1024

// watchers are the streams of Watch: the front ends that cache what they
// learn and want to hear at once of the changes the region's clients
// make (a client tells the node of the directory it changed, with the
// paths; see InvalidateRequest.changed).
type watchers struct {
	mu      sync.Mutex
	subs    map[*watcher]bool
	closed  bool
	changes int64 // changes published
	dropped int64 // watchers dropped for falling behind
}

// WatchStats counts a node's watch streams.
type WatchStats struct {
	Watchers int   // streams open now
	Changes  int64 // changes published to them since the node started
	Dropped  int64 // streams ended because they fell watchQueue behind
}

// WatchStats describes the node's watch streams, for its metrics.
func (n *Node) WatchStats() WatchStats {
	ws := &n.watch
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return WatchStats{Watchers: len(ws.subs), Changes: ws.changes, Dropped: ws.dropped}
}

type watcher struct {
	ch   chan *nodepb.Change
	lost chan struct{} // closed when the watcher fell behind
}

// add subscribes a watcher; ok is false once the node is stopping.
func (ws *watchers) add() (w *watcher, ok bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return nil, false
	}
	if ws.subs == nil {
		ws.subs = map[*watcher]bool{}
	}
	w = &watcher{ch: make(chan *nodepb.Change, watchQueue), lost: make(chan struct{})}
	ws.subs[w] = true
	return w, true
}

func (ws *watchers) remove(w *watcher) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.subs[w] {
		delete(ws.subs, w)
		close(w.ch)
	}
}

// publish queues c for every watcher; one whose queue is full is
// dropped and told it lost changes. It never blocks.
func (ws *watchers) publish(c *nodepb.Change) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.changes++
	for w := range ws.subs {
		select {
		case w.ch <- c:
		default:
			delete(ws.subs, w)
			close(w.lost)
			close(w.ch)
			ws.dropped++
		}
	}
}

// close ends every watch stream, so a stopping server does not wait for
// them, and refuses new ones.
func (ws *watchers) close() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.closed = true
	for w := range ws.subs {
		delete(ws.subs, w)
		close(w.ch)
	}
}

// Watch streams the changes this node is told of until the client goes,
// the watcher falls behind (its last message says lost) or the node
// stops (StopWatches).
func (n *Node) Watch(_ *nodepb.WatchRequest, stream nodepb.Node_WatchServer) error {
	w, ok := n.watch.add()
	if !ok {
		return status.Error(codes.Unavailable, "node is stopping")
	}
	defer n.watch.remove(w)
	// The first message says the watch is in place: a client that
	// waits for it misses no change made after.
	if err := stream.Send(&nodepb.Change{}); err != nil {
		return err
	}
	for {
		select {
		case c, ok := <-w.ch:
			if !ok {
				select {
				case <-w.lost:
					return stream.Send(&nodepb.Change{Lost: true})
				default:
					return nil
				}
			}
			if err := stream.Send(c); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// StopWatches ends the node's watch streams; a node calls it before it
// stops serving.
func (n *Node) StopWatches() { n.watch.close() }
