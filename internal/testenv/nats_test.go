package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func natsConnect(t *testing.T, s *NATSServer) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.Name("test-"+s.Name))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// crossLeaf publishes on pub until a subscriber on sub receives, with a
// deadline: interest crosses a leaf connection a moment after Subscribe.
func crossLeaf(t *testing.T, sub, pub *nats.Conn, subject string) {
	t.Helper()
	s, err := sub.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	sub.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := pub.Publish(subject, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if m, err := s.NextMsg(100 * time.Millisecond); err == nil {
			if string(m.Data) != "hello" {
				t.Fatalf("%s: got %q", subject, m.Data)
			}
			return
		}
	}
	t.Fatalf("%s: nothing crossed the leaf connection in 10 s", subject)
}

func kvPutGet(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket, key, value string) {
	t.Helper()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		t.Fatalf("create kv %s: %v", bucket, err)
	}
	if _, err := kv.PutString(ctx, key, value); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func kvGet(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket, key string) string {
	t.Helper()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("open kv %s: %v", bucket, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return string(e.Value())
}

// Two regions joined by a leaf connection: core NATS subjects cross it both
// ways, while each region's JetStream stays in its own domain (a bucket of
// the same name in each does not clash) and is still reachable from the
// other region by naming the domain.
func TestNATSLeafJoinsRegions(t *testing.T) {
	a := NATS(t, "region-a", "a")
	b := NATS(t, "region-b", "b", a.LeafURL)
	ncA, ncB := natsConnect(t, a), natsConnect(t, b)
	crossLeaf(t, ncA, ncB, "lakemesh.test.b-to-a")
	crossLeaf(t, ncB, ncA, "lakemesh.test.a-to-b")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	jsA, err := jetstream.New(ncA)
	if err != nil {
		t.Fatal(err)
	}
	jsB, err := jetstream.New(ncB)
	if err != nil {
		t.Fatal(err)
	}
	for js, want := range map[jetstream.JetStream]string{jsA: "a", jsB: "b"} {
		info, err := js.AccountInfo(ctx)
		if err != nil {
			t.Fatalf("account info: %v", err)
		}
		if info.Domain != want {
			t.Fatalf("a connection's default JetStream is in domain %q, want %q", info.Domain, want)
		}
	}
	kvPutGet(t, ctx, jsB, "catalog", "owner", "from-b")
	kvPutGet(t, ctx, jsA, "catalog", "owner", "from-a")
	if got := kvGet(t, ctx, jsB, "catalog", "owner"); got != "from-b" {
		t.Fatalf("region b's bucket holds %q: region a's bucket of the same name clashed with it", got)
	}
	if got := kvGet(t, ctx, jsA, "catalog", "owner"); got != "from-a" {
		t.Fatalf("region a's bucket holds %q", got)
	}
	bFromA, err := jetstream.NewWithDomain(ncA, "b")
	if err != nil {
		t.Fatal(err)
	}
	if got := kvGet(t, ctx, bFromA, "catalog", "owner"); got != "from-b" {
		t.Fatalf("domain b from region a: %q, want from-b", got)
	}
}

// Restart keeps the ports and the JetStream store, and the leaf
// connections come back whichever end restarts.
func TestNATSRestartKeepsState(t *testing.T) {
	a := NATS(t, "region-a", "a")
	b := NATS(t, "region-b", "b", a.LeafURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(natsConnect(t, a))
	if err != nil {
		t.Fatal(err)
	}
	kvPutGet(t, ctx, js, "pins", "/lake/s3-use1/model", "pinned")

	url := a.URL
	a.Restart(t) // the hub: b solicits it again
	if a.URL != url {
		t.Fatalf("URL changed across Restart: %s, then %s", url, a.URL)
	}
	ncA := natsConnect(t, a)
	js, err = jetstream.New(ncA)
	if err != nil {
		t.Fatal(err)
	}
	if got := kvGet(t, ctx, js, "pins", "/lake/s3-use1/model"); got != "pinned" {
		t.Fatalf("after restart: %q, want pinned", got)
	}
	crossLeaf(t, ncA, natsConnect(t, b), "lakemesh.test.after-hub-restart")

	b.Restart(t) // the spoke: it solicits a again
	crossLeaf(t, ncA, natsConnect(t, b), "lakemesh.test.after-spoke-restart")

	b.Shutdown()
	b.Shutdown()
	b.Restart(t) // after Shutdown, Restart starts it again
	crossLeaf(t, ncA, natsConnect(t, b), "lakemesh.test.after-shutdown")
}
