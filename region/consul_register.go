package region

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// The health check Consul runs against every registered node: the standard
// grpc.health.v1 service on the node's gRPC address. A node is a member
// only while it passes; one that stays critical is removed from the catalog.
const (
	checkInterval        = "1s"
	checkTimeout         = "1s"
	deregisterCriticalIn = "1m"

	// deregisterTimeout bounds Close's best-effort deregistration.
	deregisterTimeout = 5 * time.Second
)

// Register registers self as an instance of the service with the local
// Consul agent: ID = self.ID, address and port from self.Addr, tag
// "region=<region>", meta region/grpc_addr/capacity (and host/socket when
// self has a socket), and a gRPC health
// check against self.Addr. self.Region may be empty (it is c's region) but
// must not name another region. Registering the same ID again replaces the
// registration. Close deregisters it.
func (c *Consul) Register(ctx context.Context, self Member) error {
	if self.Region == "" {
		self.Region = c.cfg.Region
	}
	if err := c.checkRegistrable(self); err != nil {
		return fmt.Errorf("register member %q with consul at %s: %w", self.ID, c.address, err)
	}
	if err := c.checkDatacenter(); err != nil {
		return fmt.Errorf("register member %q with consul at %s: %w", self.ID, c.address, err)
	}
	host, portStr, _ := net.SplitHostPort(self.Addr)
	port, _ := strconv.Atoi(portStr)
	reg := &api.AgentServiceRegistration{
		ID:      self.ID,
		Name:    c.cfg.Service,
		Address: host,
		Port:    port,
		Tags:    []string{metaRegion + "=" + self.Region},
		Meta:    memberMeta(self),
		Check: &api.AgentServiceCheck{
			Name:                           "lakemesh gRPC health",
			GRPC:                           self.Addr,
			Interval:                       checkInterval,
			Timeout:                        checkTimeout,
			DeregisterCriticalServiceAfter: deregisterCriticalIn,
		},
	}
	// Hold regMu across the call so Close cannot miss a registration that
	// succeeds after it ran; the agent call is bounded by ctx.
	c.regMu.Lock()
	defer c.regMu.Unlock()
	select {
	case <-c.closed:
		return fmt.Errorf("register member %q: %w", self.ID, ErrClosed)
	default:
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := c.client.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("register member %q (%s) in region %q with consul at %s: %w", self.ID, self.Addr, self.Region, c.address, err)
	}
	if !slices.Contains(c.registered, self.ID) {
		c.registered = append(c.registered, self.ID)
	}
	c.log.Info("registered member", "member", self.ID, "addr", self.Addr, "capacity", self.Capacity)
	return nil
}

// memberMeta is the service meta that describes self; memberFromEntry
// reads it back.
func memberMeta(self Member) map[string]string {
	meta := map[string]string{
		metaRegion:   self.Region,
		metaGRPCAddr: self.Addr,
		metaCapacity: strconv.FormatInt(self.Capacity, 10),
	}
	if self.Socket != "" && self.Host != "" {
		meta[metaHost] = self.Host
		meta[metaSocket] = self.Socket
	}
	return meta
}

func (c *Consul) checkRegistrable(self Member) error {
	if self.ID == "" {
		return errors.New("member id is empty")
	}
	if self.Region != c.cfg.Region {
		return fmt.Errorf("member is in region %q, this membership follows region %q", self.Region, c.cfg.Region)
	}
	if self.Capacity < 0 {
		return fmt.Errorf("negative capacity %d", self.Capacity)
	}
	if (self.Socket == "") != (self.Host == "") {
		return fmt.Errorf("socket %q and host %q: a socket is advertised with the host it is on, or neither", self.Socket, self.Host)
	}
	if len(self.Socket) > 0 && !filepath.IsAbs(self.Socket) {
		return fmt.Errorf("socket %q is not an absolute path", self.Socket)
	}
	return checkAddr(self.Addr)
}

// checkDatacenter refuses to register through a membership that reads
// another datacenter's catalog: the local agent would register the node in
// its own datacenter, where this membership would never see it.
func (c *Consul) checkDatacenter() error {
	if c.cfg.Datacenter == "" {
		return nil
	}
	self, err := c.client.Agent().Self()
	if err != nil {
		return fmt.Errorf("read agent's datacenter: %w", err)
	}
	dc, _ := self["Config"]["Datacenter"].(string)
	if dc != c.cfg.Datacenter {
		return fmt.Errorf("agent is in datacenter %q, membership reads %q; register with an agent of %q", dc, c.cfg.Datacenter, c.cfg.Datacenter)
	}
	return nil
}

// deregisterAll removes every registration Register made, best effort.
func (c *Consul) deregisterAll() error {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	ids := c.registered
	c.registered = nil
	var errs []error
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
		err := c.client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("deregister member %q from consul at %s: %w", id, c.address, err))
			continue
		}
		c.log.Info("deregistered member", "member", id)
	}
	return errors.Join(errs...)
}
