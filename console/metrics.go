package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The processes' metrics the topology page reads (topology/metrics.go and
// the Runner's collector).
const (
	metricRecovered  = "watershed_processor_recovered"
	metricPartitions = "watershed_processor_partitions"
	metricConsumed   = "watershed_processor_records_consumed_total"
	metricProduced   = "watershed_processor_records_produced_total"
	metricDead       = "watershed_processor_dead_letters_total"
	metricLag        = "watershed_consumer_lag"
	metricRestarts   = "watershed_group_restarts_total"
)

// MetricNames returns the metrics the console reads, for tests that check
// the processes export them.
func MetricNames() []string {
	return []string{metricRecovered, metricPartitions, metricConsumed, metricProduced, metricDead, metricLag, metricRestarts}
}

// restartWindow is how long a restart keeps a group "degraded".
const restartWindow = 5 * time.Minute

// minSampleGap is the least time between the samples rates are computed
// from.
const minSampleGap = 2 * time.Second

// GroupMetrics are one group's figures over every process that runs it.
// Nil pointers are figures the source did not give (yet: rates need two
// samples of counters).
type GroupMetrics struct {
	// Replicas is the number of processes running the group, Recovered
	// those of them that recovered their tables and process records.
	Replicas  int `json:"replicas"`
	Recovered int `json:"recovered"`
	// PartitionsOwned sums the input partitions assigned to them.
	PartitionsOwned *float64 `json:"partitions_owned"`
	// InPerSecond, OutPerSecond and DeadLettersPerSecond are rates of
	// records consumed, produced and dead-lettered.
	InPerSecond          *float64 `json:"in_per_s"`
	OutPerSecond         *float64 `json:"out_per_s"`
	DeadLettersPerSecond *float64 `json:"dead_letters_per_s"`
	// Lag is the records of its inputs the group has not committed.
	Lag *float64 `json:"lag"`
	// Restarts counts the restarts of its processors after errors, and
	// RestartedRecently says whether one happened in the last minutes.
	Restarts          *float64 `json:"restarts"`
	RestartedRecently bool     `json:"restarted_recently"`
}

// Metrics is where the console reads the groups' figures: the process's
// own registry (MetricsFromGatherer), the processes' /metrics endpoints
// (MetricsFromEndpoints) or a Prometheus server (MetricsFromPrometheus).
type Metrics interface {
	// Source says where the figures come from, for the page.
	Source() string
	// Groups returns the figures by group name.
	Groups(ctx context.Context) (map[string]*GroupMetrics, error)
}

// counters are a group's counters and gauges summed over one sample.
type counters struct {
	replicas, recovered                  int
	partitions, consumed, produced, dead float64
	restarts                             float64
	lag                                  float64
	hasPartitions, hasLag, hasRestarts   bool
}

// counterMetrics computes rates from two samples of counters, taken when
// the page asks (it polls every few seconds).
type counterMetrics struct {
	source string
	gather func(ctx context.Context) ([]map[string]*dto.MetricFamily, error)
	now    func() time.Time

	mu          sync.Mutex
	prevAt      time.Time
	prev        map[string]counters
	restartedAt map[string]time.Time
}

// MetricsFromGatherer reads the figures from a registry of this process
// (the demo's).
func MetricsFromGatherer(g prometheus.Gatherer) Metrics {
	return newCounterMetrics("this process's metrics", func(context.Context) ([]map[string]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		if err != nil {
			return nil, fmt.Errorf("console: gather metrics: %w", err)
		}
		m := make(map[string]*dto.MetricFamily, len(mfs))
		for _, mf := range mfs {
			m[mf.GetName()] = mf
		}
		return []map[string]*dto.MetricFamily{m}, nil
	})
}

// MetricsFromEndpoints reads the figures from the /metrics endpoints of the
// processes (their operators' listeners), each a full URL; client nil means
// one with a 5 s timeout. A process that does not answer is left out (its
// groups show fewer replicas) and named in the error when none answers.
func MetricsFromEndpoints(urls []string, client *http.Client) Metrics {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return newCounterMetrics(fmt.Sprintf("/metrics of %d processes", len(urls)), func(ctx context.Context) ([]map[string]*dto.MetricFamily, error) {
		var out []map[string]*dto.MetricFamily
		var errs []error
		for _, u := range urls {
			m, err := scrape(ctx, client, u)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, m)
		}
		if len(out) == 0 && len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return out, nil
	})
}

func newCounterMetrics(source string, gather func(context.Context) ([]map[string]*dto.MetricFamily, error)) *counterMetrics {
	return &counterMetrics{source: source, gather: gather, now: time.Now, restartedAt: map[string]time.Time{}}
}

// scrape reads one /metrics page.
func scrape(ctx context.Context, client *http.Client, u string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("console: metrics endpoint %q: %w", u, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("console: scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("console: scrape %s: %s", u, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("console: scrape %s: %w", u, err)
	}
	return m, nil
}

func (c *counterMetrics) Source() string { return c.source }

// Groups sums the sample's series by group and derives rates from the
// previous sample.
func (c *counterMetrics) Groups(ctx context.Context) (map[string]*GroupMetrics, error) {
	targets, err := c.gather(ctx)
	if err != nil {
		return nil, err
	}
	now := c.now()
	cur := map[string]counters{}
	get := func(g string) counters { return cur[g] }
	for _, t := range targets {
		// The lag is the group's, read from the brokers by every process
		// that runs it: the largest of the processes' sums, not their
		// total.
		lag := map[string]float64{}
		for _, s := range series(t[metricLag]) {
			lag[s.group] += s.value
		}
		for g, v := range lag {
			c := get(g)
			c.lag, c.hasLag = max(c.lag, v), true
			cur[g] = c
		}
		for _, s := range series(t[metricRecovered]) {
			c := get(s.group)
			c.replicas++
			if s.value == 1 {
				c.recovered++
			}
			cur[s.group] = c
		}
		add := func(name string, f func(*counters, float64)) {
			for _, s := range series(t[name]) {
				c := get(s.group)
				f(&c, s.value)
				cur[s.group] = c
			}
		}
		add(metricPartitions, func(c *counters, v float64) { c.partitions += v; c.hasPartitions = true })
		add(metricConsumed, func(c *counters, v float64) { c.consumed += v })
		add(metricProduced, func(c *counters, v float64) { c.produced += v })
		add(metricDead, func(c *counters, v float64) { c.dead += v })
		add(metricRestarts, func(c *counters, v float64) { c.restarts += v; c.hasRestarts = true })
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	dt := now.Sub(c.prevAt).Seconds()
	usable := c.prev != nil && dt >= 0.5 && dt <= 300
	out := make(map[string]*GroupMetrics, len(cur))
	for g, v := range cur {
		m := &GroupMetrics{Replicas: v.replicas, Recovered: v.recovered}
		if v.hasPartitions {
			m.PartitionsOwned = ptr(v.partitions)
		}
		if v.hasLag {
			m.Lag = ptr(v.lag)
		}
		if v.hasRestarts {
			m.Restarts = ptr(v.restarts)
		}
		if p, ok := c.prev[g]; ok && usable {
			m.InPerSecond = rate(p.consumed, v.consumed, dt)
			m.OutPerSecond = rate(p.produced, v.produced, dt)
			m.DeadLettersPerSecond = rate(p.dead, v.dead, dt)
			if v.restarts > p.restarts {
				c.restartedAt[g] = now
			}
		}
		if at, ok := c.restartedAt[g]; ok && now.Sub(at) < restartWindow {
			m.RestartedRecently = true
		}
		out[g] = m
	}
	// Pages polling at once must not shrink the interval of each other's
	// rates: the sample is kept as the base of the next rates only once
	// it is a while after the last.
	if c.prev == nil || dt >= minSampleGap.Seconds() {
		c.prev, c.prevAt = cur, now
	}
	return out, nil
}

// rate is the per-second rate between two counter values, nil across a
// reset.
func rate(prev, cur, dt float64) *float64 {
	if cur < prev {
		return nil
	}
	return ptr((cur - prev) / dt)
}

func ptr(v float64) *float64 { return &v }

// groupValue is one series' group label and value.
type groupValue struct {
	group string
	value float64
}

// series returns the group and value of each series of mf.
func series(mf *dto.MetricFamily) []groupValue {
	if mf == nil {
		return nil
	}
	var out []groupValue
	for _, m := range mf.GetMetric() {
		g := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "group" {
				g = l.GetValue()
			}
		}
		if g == "" {
			continue
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		out = append(out, groupValue{g, v})
	}
	return out
}

// promMetrics asks a Prometheus server that scrapes the processes.
type promMetrics struct {
	base   *url.URL
	client *http.Client
}

// MetricsFromPrometheus reads the figures from the Prometheus server at
// base (such as http://prometheus:9090) with instant queries; client nil
// means one with a 10 s timeout.
func MetricsFromPrometheus(base string, client *http.Client) (Metrics, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("console: Prometheus URL %q: want http(s)://host[:port][/path]", base)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &promMetrics{base: u, client: client}, nil
}

func (p *promMetrics) Source() string { return "Prometheus at " + p.base.Redacted() }

// promQueries are the queries of each figure, by group.
var promQueries = []struct {
	query string
	set   func(m *GroupMetrics, v float64)
}{
	{"count by (group) (" + metricRecovered + ")", func(m *GroupMetrics, v float64) { m.Replicas = int(v) }},
	{"sum by (group) (" + metricRecovered + ")", func(m *GroupMetrics, v float64) { m.Recovered = int(v) }},
	{"sum by (group) (" + metricPartitions + ")", func(m *GroupMetrics, v float64) { m.PartitionsOwned = ptr(v) }},
	{"sum by (group) (rate(" + metricConsumed + "[1m]))", func(m *GroupMetrics, v float64) { m.InPerSecond = ptr(v) }},
	{"sum by (group) (rate(" + metricProduced + "[1m]))", func(m *GroupMetrics, v float64) { m.OutPerSecond = ptr(v) }},
	{"sum by (group) (rate(" + metricDead + "[1m]))", func(m *GroupMetrics, v float64) { m.DeadLettersPerSecond = ptr(v) }},
	// Every process of a group reports the group's lag: one per partition.
	{"sum by (group) (max by (group, topic, partition) (" + metricLag + "))", func(m *GroupMetrics, v float64) { m.Lag = ptr(v) }},
	{"sum by (group) (" + metricRestarts + ")", func(m *GroupMetrics, v float64) { m.Restarts = ptr(v) }},
	{"sum by (group) (increase(" + metricRestarts + "[5m]))", func(m *GroupMetrics, v float64) { m.RestartedRecently = v > 0 }},
}

func (p *promMetrics) Groups(ctx context.Context) (map[string]*GroupMetrics, error) {
	out := map[string]*GroupMetrics{}
	for _, q := range promQueries {
		vec, err := p.query(ctx, q.query)
		if err != nil {
			return nil, err
		}
		for g, v := range vec {
			m := out[g]
			if m == nil {
				m = &GroupMetrics{}
				out[g] = m
			}
			q.set(m, v)
		}
	}
	return out, nil
}

// query runs an instant query and returns its vector by group.
func (p *promMetrics) query(ctx context.Context, q string) (map[string]float64, error) {
	u := p.base.JoinPath("api/v1/query")
	u.RawQuery = url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("console: Prometheus query: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("console: Prometheus query: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("console: Prometheus answered %s: %w", resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("console: Prometheus query %q: %s", q, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("console: Prometheus query %q: a %s, not a vector", q, body.Data.ResultType)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("console: Prometheus query %q: value %v is not a string", q, r.Value[1])
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("console: Prometheus query %q: %w", q, err)
		}
		if g := r.Metric["group"]; g != "" {
			out[g] = v
		}
	}
	return out, nil
}
