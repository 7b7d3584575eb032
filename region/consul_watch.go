package region

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

const (
	// watchWait is how long one blocking query may wait for a change.
	// Consul adds up to watchWait/16 of jitter; the request deadline
	// leaves room for that, so a connection that died silently is noticed
	// within about a minute.
	watchWait     = time.Minute
	watchDeadline = watchWait + watchWait/16 + 15*time.Second

	backoffMin = 250 * time.Millisecond
	backoffMax = 15 * time.Second
)

// watch follows the healthy instances with blocking queries until ctx ends.
// It is the only writer of c.members.
func (c *Consul) watch(ctx context.Context) {
	defer close(c.watchDone)
	var index uint64
	backoff := backoffMin
	for {
		entries, meta, err := c.query(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.setError(err)
			c.log.Warn("membership query failed", "err", err, "retry_in", backoff)
			// The one timed wait: a bounded exponential backoff while the
			// agent is unreachable or erroring.
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, backoffMax)
			continue
		}
		backoff = backoffMin
		index = nextIndex(index, meta.LastIndex)
		c.setMembers(c.parseEntries(entries))
	}
}

func (c *Consul) query(ctx context.Context, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	qctx, cancel := context.WithTimeout(ctx, watchDeadline)
	defer cancel()
	q := (&api.QueryOptions{
		Datacenter: c.cfg.Datacenter,
		WaitIndex:  index,
		WaitTime:   watchWait,
		Filter:     c.filter,
	}).WithContext(qctx)
	entries, meta, err := c.client.Health().Service(c.cfg.Service, "", true, q)
	if err != nil {
		return nil, nil, fmt.Errorf("healthy %q instances in region %q from %s: %w", c.cfg.Service, c.cfg.Region, c.address, err)
	}
	return entries, meta, nil
}

// nextIndex applies Consul's rules for blocking-query indexes: an index
// that goes backwards (a restored snapshot, a new leader with less state)
// restarts from zero, and zero is never waited on, since waiting on it
// returns at once and would spin.
func nextIndex(prev, last uint64) uint64 {
	if last < prev {
		return 0
	}
	return max(last, 1)
}

// parseEntries turns service entries into members sorted by ID, skipping
// (and logging) entries whose meta does not describe a member of c's
// region.
func (c *Consul) parseEntries(entries []*api.ServiceEntry) []Member {
	members := make([]Member, 0, len(entries))
	for _, e := range entries {
		m, err := memberFromEntry(e, c.cfg.Region)
		if err != nil {
			c.log.Warn("skipping service instance with bad meta", "err", err)
			continue
		}
		members = append(members, m)
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	// The same ID on two Consul nodes is a misconfiguration; placement
	// needs unique IDs, so keep the first and say so.
	return slices.CompactFunc(members, func(a, b Member) bool {
		if a.ID == b.ID {
			c.log.Warn("duplicate member id in consul; keeping one", "member", a.ID, "addr", a.Addr, "other_addr", b.Addr)
			return true
		}
		return false
	})
}

// Service meta keys written by Register and read by the watch.
const (
	metaRegion   = "region"
	metaGRPCAddr = "grpc_addr"
	metaCapacity = "capacity"
	// metaHost and metaSocket are written together or not at all; members
	// registered before they existed have neither and are dialled at
	// grpc_addr.
	metaHost   = "host"
	metaSocket = "socket"
)

func memberFromEntry(e *api.ServiceEntry, region string) (Member, error) {
	if e == nil || e.Service == nil {
		return Member{}, fmt.Errorf("entry without a service")
	}
	s := e.Service
	where := fmt.Sprintf("instance %q", s.ID)
	if e.Node != nil {
		where += " on consul node " + strconv.Quote(e.Node.Node)
	}
	if s.ID == "" {
		return Member{}, fmt.Errorf("%s: empty service id", where)
	}
	if r := s.Meta[metaRegion]; r != region {
		return Member{}, fmt.Errorf("%s: meta %s=%q, want %q", where, metaRegion, r, region)
	}
	addr := s.Meta[metaGRPCAddr]
	if addr == "" && s.Port != 0 {
		host := s.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		addr = net.JoinHostPort(host, strconv.Itoa(s.Port))
	}
	if err := checkAddr(addr); err != nil {
		return Member{}, fmt.Errorf("%s: meta %s: %w", where, metaGRPCAddr, err)
	}
	var capacity int64
	if v, ok := s.Meta[metaCapacity]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return Member{}, fmt.Errorf("%s: meta %s=%q is not a byte count", where, metaCapacity, v)
		}
		capacity = n
	}
	m := Member{ID: s.ID, Region: region, Addr: addr, Capacity: capacity}
	// A socket without its host (or a relative path) cannot be dialled
	// safely; the member is still reachable at addr, so keep it without.
	if host, sock := s.Meta[metaHost], s.Meta[metaSocket]; host != "" && filepath.IsAbs(sock) {
		m.Host, m.Socket = host, sock
	}
	return m, nil
}

// checkAddr accepts host:port with a host a peer can dial and a port in
// range.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("address %q is unspecified; advertise an address peers can dial", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: bad port", addr)
	}
	return nil
}

func equalMembers(a, b []Member) bool { return slices.Equal(a, b) }

// diffMembers lists the IDs in next but not prev, and in prev but not
// next; both inputs are sorted by ID. A member whose address or capacity
// changed appears in neither.
func diffMembers(prev, next []Member) (added, removed []string) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next) || (i < len(prev) && prev[i].ID < next[j].ID):
			removed = append(removed, prev[i].ID)
			i++
		case i == len(prev) || next[j].ID < prev[i].ID:
			added = append(added, next[j].ID)
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}
