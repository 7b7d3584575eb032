package region

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestStatic(t *testing.T) {
	a := Member{ID: "a", Region: "r1", Addr: "10.0.0.1:7000"}
	b := Member{ID: "b", Region: "r1", Addr: "10.0.0.2:7000"}
	c := Member{ID: "c", Region: "r1", Addr: "10.0.0.3:7000"}
	in := []Member{b, a}
	s := NewStatic(in...)
	in[0] = c // the caller's slice is not the membership's
	if got := s.Members(); !slices.Equal(got, []Member{a, b}) {
		t.Fatalf("Members = %v, want [a b] sorted", got)
	}

	ch := s.Changed()
	s.Set(b, a)
	if closed(ch) {
		t.Fatal("Set of the same members fired Changed")
	}
	s.Set(c, a)
	if !closed(ch) {
		t.Fatal("Set of new members did not fire Changed")
	}
	if got := s.Members(); !slices.Equal(got, []Member{a, c}) {
		t.Fatalf("Members after Set = %v, want [a c]", got)
	}
	if closed(s.Changed()) {
		t.Fatal("the next Changed channel is already closed")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.WaitFor(ctx, hasID("b")) }()
	s.Set(a, b)
	if err := <-done; err != nil {
		t.Fatalf("WaitFor: %v", err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if err := s.WaitFor(short, hasID("z")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with no chance = %v, want deadline exceeded", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, hasID("z")); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitFor after Close = %v, want ErrClosed", err)
	}
}
