package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/hashicorp/consul/api"
)

// DefaultService is the Consul service name cache nodes register under.
const DefaultService = "lakemesh"

// ConsulConfig says which Consul agent to ask and which members to follow.
type ConsulConfig struct {
	// Address is the agent's HTTP address (host:port, or a URL with
	// scheme). "" takes api.DefaultConfig's, i.e. CONSUL_HTTP_ADDR or
	// 127.0.0.1:8500. The ACL token always comes from the environment
	// (CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE), never from here, so
	// that a logged config never carries it.
	Address string
	// Datacenter is the Consul datacenter whose catalog is read; "" is the
	// agent's own. Register only makes sense for the agent's own.
	Datacenter string
	// Service is the Consul service name; "" is DefaultService.
	Service string
	// Region is the region whose members are followed. Required.
	Region string
	// Logger receives the watch's events; nil discards them.
	Logger *slog.Logger
}

// Consul is a Membership that follows the healthy instances of a service in
// one region through Consul blocking queries, and a Registrar that
// registers the local node with the local agent.
//
// It owns one goroutine, the watch, started by NewConsul and stopped by
// Close. Locks: regMu serialises Register with Close's deregistration and
// is held across agent calls; mu guards the member set, is never held
// across a call, and is never taken while regMu is wanted (no order to keep:
// no code path holds both).
type Consul struct {
	client    *api.Client
	transport *http.Transport
	cfg       ConsulConfig
	address   string // for errors and logs
	filter    string
	log       *slog.Logger

	stop      context.CancelFunc
	watchDone chan struct{} // closed when the watch goroutine returns
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	members []Member      // sorted by ID; replaced, never modified
	changed chan struct{} // closed and replaced when members changes
	ready   chan struct{} // closed after the first successful query
	lastErr error         // the watch's last error, for NewConsul's

	regMu      sync.Mutex
	registered []string // service IDs to deregister on Close; under regMu
}

var (
	_ Membership = (*Consul)(nil)
	_ Registrar  = (*Consul)(nil)
)

// NewConsul starts following cfg.Region's healthy members and returns once
// the first query has answered. ctx bounds only that wait: the watch runs
// until Close. When ctx ends first, NewConsul stops the watch and returns
// an error naming the agent's address and the last error seen.
func NewConsul(ctx context.Context, cfg ConsulConfig) (*Consul, error) {
	c, err := FollowConsul(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.ready:
		return c, nil
	case <-ctx.Done():
		err := c.NotReady(ctx.Err())
		c.Close()
		return nil, err
	}
}

// FollowConsul starts following cfg.Region's healthy members and returns
// at once, with no members until Consul first answers (Ready). It is for
// a region that may be unreachable for now, another region's datacenter
// across a WAN: its members appear when Consul can answer for them, with
// no restart. It fails only on a bad configuration.
func FollowConsul(cfg ConsulConfig) (*Consul, error) {
	if cfg.Region == "" {
		return nil, errors.New("consul membership: region is required")
	}
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	apiCfg := api.DefaultConfig()
	if cfg.Address != "" {
		apiCfg.Address = cfg.Address
	}
	apiCfg.Datacenter = cfg.Datacenter
	address := apiCfg.Address
	if apiCfg.Scheme != "" && apiCfg.Scheme != "http" {
		address = apiCfg.Scheme + "://" + address
	}
	client, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("consul membership for region %q: client for %s: %w", cfg.Region, address, err)
	}
	watchCtx, stop := context.WithCancel(context.Background())
	c := &Consul{
		client:    client,
		transport: apiCfg.Transport,
		cfg:       cfg,
		address:   address,
		// strconv.Quote's escapes are what the filter language unquotes.
		filter:    "Service.Meta.region == " + strconv.Quote(cfg.Region),
		log:       log.With("region", cfg.Region, "service", cfg.Service, "consul", address),
		stop:      stop,
		watchDone: make(chan struct{}),
		closed:    make(chan struct{}),
		changed:   make(chan struct{}),
		ready:     make(chan struct{}),
	}
	go c.watch(watchCtx)
	return c, nil
}

// Ready is closed once Consul has first answered for the region.
func (c *Consul) Ready() <-chan struct{} { return c.ready }

// NotReady is the error of a wait for the first answer that ended with
// why: it names the agent's address and the last error seen.
func (c *Consul) NotReady(why error) error {
	c.mu.Lock()
	lastErr := c.lastErr
	c.mu.Unlock()
	if lastErr == nil {
		lastErr = errors.New("no answer yet")
	}
	return fmt.Errorf("consul membership for region %q: agent at %s: %w (last error: %v)", c.cfg.Region, c.address, why, lastErr)
}

// Members returns the region's healthy members sorted by ID; do not modify
// the slice.
func (c *Consul) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members
}

// Changed returns a channel closed the next time the member set changes.
// Close does not close it.
func (c *Consul) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WaitFor waits until pred holds for the member set. It returns ctx's
// error (wrapped, with the last set seen) when ctx ends first, and
// ErrClosed when c is closed first.
func (c *Consul) WaitFor(ctx context.Context, pred func([]Member) bool) error {
	return waitFor(ctx, c, c.closed, pred)
}

// Close stops the watch and deregisters every member that Register
// registered, each within a short timeout. It is safe to call more than
// once; later calls return the first call's result.
func (c *Consul) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.stop()
		<-c.watchDone
		c.closeErr = c.deregisterAll()
		c.transport.CloseIdleConnections()
	})
	return c.closeErr
}

// setMembers installs next and, if it differs from the current set, fires
// Changed and logs the difference.
func (c *Consul) setMembers(next []Member) {
	c.mu.Lock()
	prev := c.members
	changed := !equalMembers(prev, next)
	if changed {
		c.members = next
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.lastErr = nil
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	c.mu.Unlock()
	if changed {
		added, removed := diffMembers(prev, next)
		c.log.Info("region members changed", "members", len(next), "added", added, "removed", removed)
	}
}

func (c *Consul) setError(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}
