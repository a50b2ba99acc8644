package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/watershed-io/watershed/internal/poll"
	"github.com/watershed-io/watershed/processors"
)

// Roles of the processes of a Cluster.
const (
	RoleEdge    = "edge"
	RoleReplica = "replica"
	RoleView    = "view"
)

// BuildBinary builds ./cmd/watershed of the module at repoRoot into dir and
// returns the binary's path.
func BuildBinary(ctx context.Context, repoRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "watershed")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/watershed")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("faults: go build: %w\n%s", err, out)
	}
	return bin, nil
}

// Config describes a Cluster.
type Config struct {
	// Bin is the watershed binary.
	Bin string
	// Dir holds every process's data folder and log.
	Dir string
	// Brokers are Kafka's bootstrap addresses.
	Brokers []string
	// Prefix of every topic and group name, so that runs do not meet.
	Prefix string
	// Partitions of every pipeline topic.
	Partitions int
	// Groups to run (default every group of the pipeline).
	Groups []string
	// Replicas of every group.
	Replicas int
	// Edges and Views are the ingest edges and view servers to run.
	Edges, Views int
	// DeviceSecret and ViewKey are the edges' secret and the views' key.
	DeviceSecret, ViewKey string
	// HotStandby starts the replicas with --hot-standby.
	HotStandby bool
	// SinkArgs are added to the command line of the sink group's
	// replicas (the store's flags).
	SinkArgs []string
	// Env is added to every process's environment.
	Env []string
	// Log receives the harness's events.
	Log *slog.Logger
}

// Node is one process of a Cluster.
type Node struct {
	*Proc
	// Role is RoleEdge, RoleReplica or RoleView; Group the replica's
	// group.
	Role, Group string
	// URL is the base URL of its public HTTP server (the edge's API, the
	// view API), or of its operators' listener for a replica, which has no
	// public one.
	URL string
	// OpsURL is the base URL of its operators' listener: /metrics and
	// /readyz with the reason.
	OpsURL string
	// held is set while the harness keeps the process down on purpose.
	held atomic.Bool
	// client sends the harness's requests to the node.
	client *http.Client
}

// Cluster runs the pipeline's processes and restarts those that die by
// themselves, like a process supervisor.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	Edges    []*Node
	Replicas map[string][]*Node
	Views    []*Node
	all      []*Node

	mu        sync.Mutex
	restarted map[string]int // unexpected exits, by node
	stop      context.CancelFunc
	stopped   chan struct{}
}

// NewCluster prepares the processes of cfg without starting them.
func NewCluster(cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Groups) == 0 {
		cfg.Groups = []string{processors.GroupDecode, processors.GroupDedupe, processors.GroupDeviceState, processors.GroupAlerts,
			processors.GroupSummaries, processors.GroupSink}
	}
	c := &Cluster{cfg: cfg, log: cfg.Log, Replicas: map[string][]*Node{}, restarted: map[string]int{}}
	ports := NewPorts()
	common := []string{"--brokers", strings.Join(cfg.Brokers, ",")}
	// The secrets go by the environment, as in production: a flag value
	// would be visible to the machine's other users (and draws a warning).
	env := append([]string{"WATERSHED_PREFIX=" + cfg.Prefix, "WATERSHED_PARTITIONS=" + strconv.Itoa(cfg.Partitions),
		"WATERSHED_DEVICE_SECRET=" + cfg.DeviceSecret, "WATERSHED_VIEW_KEY=" + cfg.ViewKey}, cfg.Env...)
	add := func(role, group, name string, args []string, port int) error {
		dir := filepath.Join(cfg.Dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("faults: folder of %s: %w", name, err)
		}
		n := &Node{Role: role, Group: group, URL: "http://127.0.0.1:" + strconv.Itoa(port), client: &http.Client{Timeout: 5 * time.Second}}
		n.OpsURL = n.URL
		if role != RoleReplica {
			opsPort, err := ports.Free()
			if err != nil {
				return err
			}
			n.OpsURL = "http://127.0.0.1:" + strconv.Itoa(opsPort)
			args = append(args, "--ops-addr", "127.0.0.1:"+strconv.Itoa(opsPort))
		}
		n.Proc = NewProc(Spec{Name: name, Path: cfg.Bin, Args: args, Env: env, LogPath: filepath.Join(cfg.Dir, name+".log")}, cfg.Log)
		c.all = append(c.all, n)
		switch role {
		case RoleEdge:
			c.Edges = append(c.Edges, n)
		case RoleView:
			c.Views = append(c.Views, n)
		default:
			c.Replicas[group] = append(c.Replicas[group], n)
		}
		return nil
	}
	for i := range cfg.Edges {
		port, err := ports.Free()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("edge-%d", i+1)
		args := append([]string{"ingest", "--addr", "127.0.0.1:" + strconv.Itoa(port), "--edge-id", name}, common...)
		if err := add(RoleEdge, "", name, args, port); err != nil {
			return nil, err
		}
	}
	for _, g := range cfg.Groups {
		for r := range cfg.Replicas {
			port, err := ports.Free()
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("%s-%d", g, r+1)
			args := append([]string{"run", "--groups", g, "--data-dir", filepath.Join(cfg.Dir, name),
				"--ops-addr", "127.0.0.1:" + strconv.Itoa(port), "--client-id", name}, common...)
			if cfg.HotStandby {
				args = append(args, "--hot-standby")
			}
			if g == processors.GroupSink {
				args = append(args, cfg.SinkArgs...)
			}
			if err := add(RoleReplica, g, name, args, port); err != nil {
				return nil, err
			}
		}
	}
	for i := range cfg.Views {
		port, err := ports.Free()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("view-%d", i+1)
		args := append([]string{"view", "--addr", "127.0.0.1:" + strconv.Itoa(port), "--data-dir", filepath.Join(cfg.Dir, name),
			"--client-id", name}, common...)
		if err := add(RoleView, "", name, args, port); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Nodes returns every process of the cluster.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.all...) }

// AllReplicas returns the replicas of every group.
func (c *Cluster) AllReplicas() []*Node {
	var out []*Node
	for _, n := range c.all {
		if n.Role == RoleReplica {
			out = append(out, n)
		}
	}
	return out
}

// EdgeURLs returns the edges' base URLs.
func (c *Cluster) EdgeURLs() []string {
	var out []string
	for _, n := range c.Edges {
		out = append(out, n.URL)
	}
	return out
}

// Start starts every process and the supervisor, which restarts a process
// that exits while not held down, after a short pause.
func (c *Cluster) Start() error {
	for _, n := range c.all {
		if err := n.Start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.stopped = cancel, make(chan struct{})
	go c.supervise(ctx)
	return nil
}

func (c *Cluster) supervise(ctx context.Context) {
	defer close(c.stopped)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	down := map[*Node]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range c.all {
			if n.held.Load() || n.Running() {
				delete(down, n)
				continue
			}
			// A process that died by itself is restarted a second later,
			// as a supervisor with a restart delay would.
			since, seen := down[n]
			if !seen {
				down[n] = time.Now()
				c.mu.Lock()
				c.restarted[n.Name()]++
				c.mu.Unlock()
				c.log.Warn("process exited by itself; restarting", "proc", n.Name(), "log", n.LogPath())
				continue
			}
			if time.Since(since) >= time.Second {
				if err := n.Start(); err != nil {
					c.log.Error("restart failed", "proc", n.Name(), "err", err)
				}
			}
		}
	}
}

// RunsGroup reports whether the cluster runs group (named without the
// topology's prefix), or the retry companion of a group it runs
// ("<group>-..."), which `watershed run --groups` starts with it.
func (c *Cluster) RunsGroup(group string) bool {
	for _, g := range c.cfg.Groups {
		if group == g || strings.HasPrefix(group, g+"-") {
			return true
		}
	}
	return false
}

// UnexpectedExits returns, by process, how often it exited without being
// told to (the supervisor restarted it).
func (c *Cluster) UnexpectedExits() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.restarted))
	for k, v := range c.restarted {
		out[k] = v
	}
	return out
}

// TryHold marks n as held unless it already is, and reports whether it
// was marked: the fault injectors use it so that two never take the same
// process.
func (c *Cluster) TryHold(n *Node) bool { return n.held.CompareAndSwap(false, true) }

// Hold keeps n down: the supervisor does not restart it until Release.
func (c *Cluster) Hold(n *Node) { n.held.Store(true) }

// Release starts n again and lets the supervisor watch it.
func (c *Cluster) Release(n *Node) error {
	err := n.Start()
	n.held.Store(false)
	return err
}

// Close stops the supervisor and kills every process group (Proc.Close).
func (c *Cluster) Close() {
	if c.stop != nil {
		c.stop()
		<-c.stopped
	}
	var wg sync.WaitGroup
	for _, n := range c.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.held.Store(true)
			_ = n.Proc.Close()
		}()
	}
	wg.Wait()
}

// Ready returns nil when n answers /readyz with 200 (asked on its
// operators' listener, which says why not).
func (n *Node) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.OpsURL+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("faults: readyz request: %w", err)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("faults: %s /readyz: %w", n.Name(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("faults: %s /readyz %d: %s", n.Name(), resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitReady polls every process's /readyz until all answer 200.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	return Poll(ctx, timeout, 200*time.Millisecond, func() error {
		var errs []error
		for _, n := range c.all {
			if err := n.Ready(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// Metric returns the samples of the metric name on n's /metrics page,
// each with its labels.
func (n *Node) Metric(ctx context.Context, name string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.OpsURL+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("faults: metrics request: %w", err)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("faults: %s /metrics: %w", n.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("faults: %s /metrics answered %d", n.Name(), resp.StatusCode)
	}
	return parseMetric(resp.Body, name)
}

// Sample is one sample of a metric.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// parseMetric reads the samples of name from a Prometheus text page. It
// handles the label values this project writes (no escaped quotes).
func parseMetric(r io.Reader, name string) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		s := Sample{Labels: map[string]string{}}
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				return nil, fmt.Errorf("faults: metric line %q", line)
			}
			for _, kv := range strings.Split(rest[1:end], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					s.Labels[strings.TrimSpace(k)] = strings.Trim(v, `"`)
				}
			}
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("faults: metric line %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("faults: metric line %q: %w", line, err)
		}
		s.Value = v
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("faults: read metrics: %w", err)
	}
	return out, nil
}

// Poll calls cond every interval until it returns nil, ctx ends or timeout
// passes; then it returns the last error.
func Poll(ctx context.Context, timeout, interval time.Duration, cond func() error) error {
	if err := poll.Until(ctx, timeout, interval, cond); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}
