package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ConsulAgent is a real Consul agent in -dev mode (a single-server
// datacenter, state in memory) started for one test.
type ConsulAgent struct {
	HTTPAddr   string // host:port of the HTTP API
	Datacenter string // the agent's datacenter
	LogPath    string // the agent's combined output

	serfWANAddr string // host:port other datacenters' servers WAN-join
}

// ConsulOption changes how Consul starts the agent.
type ConsulOption func(*consulOptions)

type consulOptions struct {
	datacenter string
	nodeName   string
}

// WithDatacenter names the agent's datacenter (default "dc1"), for tests
// that run one agent per region.
func WithDatacenter(name string) ConsulOption {
	return func(o *consulOptions) { o.datacenter = name }
}

// WithNodeName names the agent's Consul node (default "<datacenter>-dev").
func WithNodeName(name string) ConsulOption {
	return func(o *consulOptions) { o.nodeName = name }
}

const (
	consulStartTimeout = 30 * time.Second
	consulStartTries   = 3 // fresh ports each time: FreePort can race
	consulLogTail      = 4 << 10
)

// Consul starts `consul agent -dev` on loopback ports of its own, waits
// until it has elected itself leader, and stops it (with its process
// group) when t ends, printing the tail of its output if t failed. It
// skips t, through Unavailable, when the consul binary cannot be found.
func Consul(t testing.TB, opts ...ConsulOption) *ConsulAgent {
	t.Helper()
	o := consulOptions{datacenter: "dc1"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.nodeName == "" {
		o.nodeName = o.datacenter + "-dev"
	}
	bin := Binary(t, "consul")
	dir := t.TempDir()
	var lastErr error
	for try := 1; try <= consulStartTries; try++ {
		agent, err := startConsul(t, bin, dir, try, o)
		if err == nil {
			return agent
		}
		lastErr = err
		t.Logf("consul agent attempt %d: %v", try, err)
	}
	t.Fatalf("start consul agent (datacenter %s): %v", o.datacenter, lastErr)
	return nil
}

// startConsul runs one agent and waits for its leader. On failure the
// process is already stopped and its output tail is in the error.
func startConsul(t testing.TB, bin, dir string, try int, o consulOptions) (*ConsulAgent, error) {
	httpPort := strconv.Itoa(FreePort(t))
	httpAddr := "127.0.0.1:" + httpPort
	serfWANPort := strconv.Itoa(FreePort(t))
	logPath := filepath.Join(dir, fmt.Sprintf("consul-%d.log", try))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create consul log: %w", err)
	}
	cmd := exec.Command(bin, "agent", "-dev",
		"-datacenter", o.datacenter,
		"-node", o.nodeName,
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", httpPort,
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-server-port", strconv.Itoa(FreePort(t)),
		"-serf-lan-port", strconv.Itoa(FreePort(t)),
		"-serf-wan-port", serfWANPort,
		"-log-level", "warn",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { // owned by stop below, which waits for it
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	stop := func() {
		// Negative pid: the whole process group the agent leads.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}

	if err := waitConsulLeader(httpAddr, exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w\n%s", err, consulTail(logPath))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("consul agent %s (datacenter %s) output, last %d bytes of %s:\n%s",
				httpAddr, o.datacenter, consulLogTail, logPath, consulTail(logPath))
		}
	})
	return &ConsulAgent{HTTPAddr: httpAddr, Datacenter: o.datacenter, LogPath: logPath,
		serfWANAddr: "127.0.0.1:" + serfWANPort}, nil
}

// waitConsulLeader retries /v1/status/leader until it names a leader, the
// agent exits, or the start deadline passes.
func waitConsulLeader(httpAddr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), consulStartTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	var lastErr error
	for {
		leader, err := consulLeader(ctx, client, httpAddr)
		if err == nil && leader != "" {
			return nil
		}
		if err == nil {
			err = errors.New("no leader yet")
		}
		lastErr = err
		select {
		case <-exited:
			return fmt.Errorf("consul agent at %s exited before electing a leader (last: %v)", httpAddr, lastErr)
		case <-ctx.Done():
			return fmt.Errorf("consul agent at %s: no leader within %s (last: %v)", httpAddr, consulStartTimeout, lastErr)
		case <-retry.C:
		}
	}
}

func consulLeader(ctx context.Context, client *http.Client, httpAddr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/status/leader", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status/leader: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var leader string
	if err := json.Unmarshal(body, &leader); err != nil {
		return "", fmt.Errorf("status/leader: %q: %w", body, err)
	}
	return leader, nil
}

// consulTail returns the last consulLogTail bytes of the file at path.
func consulTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	if len(b) > consulLogTail {
		b = b[len(b)-consulLogTail:]
	}
	return string(b)
}

// consulWANTimeout bounds how long WAN gossip may take to make every
// datacenter known to every other.
const consulWANTimeout = 30 * time.Second

// ConsulWAN starts one dev agent per datacenter name and WAN-joins them,
// as lakemesh runs one Consul datacenter per region in production, so that
// a service registered in datacenter b is visible from c's agent with
// ?dc=b. It returns the agents in the order given, once every agent lists
// every datacenter, and skips t through Unavailable when the consul binary
// cannot be found.
func ConsulWAN(t testing.TB, datacenters ...string) []*ConsulAgent {
	t.Helper()
	if len(datacenters) == 0 {
		t.Fatalf("ConsulWAN: no datacenters")
	}
	agents := make([]*ConsulAgent, len(datacenters))
	for i, dc := range datacenters {
		agents[i] = Consul(t, WithDatacenter(dc))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	// Joining one server is enough: WAN gossip spreads the rest.
	for _, a := range agents[1:] {
		if err := consulWANJoin(client, a.HTTPAddr, agents[0].serfWANAddr); err != nil {
			t.Fatalf("datacenter %s: WAN-join %s (datacenter %s): %v", a.Datacenter, agents[0].serfWANAddr, agents[0].Datacenter, err)
		}
	}
	deadline := time.Now().Add(consulWANTimeout)
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for _, a := range agents {
		for {
			known, err := consulDatacenters(client, a.HTTPAddr)
			missing := missingDatacenters(datacenters, known)
			if err == nil && len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("datacenter %s does not know datacenters %v after %s (knows %v, last error %v)",
					a.Datacenter, missing, consulWANTimeout, known, err)
			}
			<-retry.C
		}
	}
	return agents
}

// consulWANJoin asks the agent at httpAddr to join the WAN pool through
// the server whose serf WAN address is wanAddr.
func consulWANJoin(client *http.Client, httpAddr, wanAddr string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+httpAddr+"/v1/agent/join/"+wanAddr+"?wan=1", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent/join: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// consulDatacenters lists the datacenters the agent at httpAddr can reach.
func consulDatacenters(client *http.Client, httpAddr string) ([]string, error) {
	resp, err := client.Get("http://" + httpAddr + "/v1/catalog/datacenters")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("catalog/datacenters: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var dcs []string
	if err := json.Unmarshal(body, &dcs); err != nil {
		return nil, fmt.Errorf("catalog/datacenters: %q: %w", body, err)
	}
	return dcs, nil
}

func missingDatacenters(want, known []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.Contains(known, w) {
			missing = append(missing, w)
		}
	}
	return missing
}
