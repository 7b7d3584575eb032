package cachenode

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// MeshEvents carries events every node of the mesh must hear, across
// regions, over NATS: today, metadata invalidations (lakemesh sync), so a
// refresh asked for in one region reaches the metadata caches of all.
// Within a region the client also tells each member directly over gRPC,
// so a region without NATS still refreshes itself.
type MeshEvents struct {
	nc      *nats.Conn
	subject string
	sub     *nats.Subscription
	log     *slog.Logger
}

// JoinMesh subscribes to the mesh's events on nc and calls onInvalidate
// for every invalidation published by any node (this one included).
// Handlers run on the subscription's goroutine, owned by nc; Close stops
// them.
func JoinMesh(nc *nats.Conn, mesh string, log *slog.Logger, onInvalidate func(path string)) (*MeshEvents, error) {
	e := &MeshEvents{nc: nc, subject: "lakemesh." + mesh + ".metadata.invalidate", log: log}
	sub, err := nc.Subscribe(e.subject, func(m *nats.Msg) { onInvalidate(string(m.Data)) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", e.subject, err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", e.subject, err)
	}
	e.sub = sub
	return e, nil
}

// PublishInvalidate tells every node of the mesh to drop its metadata at
// and below path. It returns once the NATS server has the message.
func (e *MeshEvents) PublishInvalidate(path string) error {
	if err := e.nc.Publish(e.subject, []byte(path)); err != nil {
		return fmt.Errorf("publish invalidation of %s: %w", path, err)
	}
	return e.nc.FlushTimeout(5 * time.Second)
}

// Close stops listening.
func (e *MeshEvents) Close() error { return e.sub.Unsubscribe() }
