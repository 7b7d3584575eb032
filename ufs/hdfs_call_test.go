package ufs

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestHDFSCallCancel checks the wrapper that lets a cancelled caller walk
// away from a namenode call that takes no context: the caller returns at
// once, the abandoned result is released, and Close-style waiting ends
// when the call does.
func TestHDFSCallCancel(t *testing.T) {
	f := &hdfsFS{slots: make(chan struct{}, 2)}
	unblock := make(chan struct{})
	released := make(chan int, 1)
	ctx, cancel := context.WithCancel(t.Context())

	start := time.Now()
	// The call is cancelled while it is blocked in the "namenode".
	_, err := hdfsCall(ctx, f, func() (int, error) { cancel(); <-unblock; return 42, nil }, func(v int) { released <- v })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled call returned after %v", d)
	}
	close(unblock)
	if v := <-released; v != 42 {
		t.Fatalf("released %d", v)
	}
	f.calls.Wait()
	if len(f.slots) != 0 {
		t.Fatalf("%d slots still taken", len(f.slots))
	}

	// A call that finishes delivers its result and releases nothing.
	v, err := hdfsCall(t.Context(), f, func() (int, error) { return 7, nil }, func(int) { t.Error("released a delivered result") })
	if v != 7 || err != nil {
		t.Fatalf("call = %d, %v", v, err)
	}

	// With every slot held by abandoned calls, a new call waits for its
	// context rather than starting another goroutine.
	f.slots <- struct{}{}
	f.slots <- struct{}{}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	if _, err := hdfsCall(ctx2, f, func() (int, error) { t.Error("ran without a slot"); return 0, nil }, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}
