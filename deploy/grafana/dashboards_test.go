package grafana

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/watershed-io/watershed/internal/demo"
)

// query is one PromQL expression of a dashboard and where it is.
type query struct{ where, expr string }

// dashboardQueries reads every dashboard of dashboards/ and returns every
// "expr" in it (panels, panels in rows, whatever nests them), and every
// data source uid the dashboards name.
func dashboardQueries(t *testing.T) ([]query, map[string]bool) {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in deploy/grafana/dashboards: %v", err)
	}
	var qs []query
	uids := map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string           `json:"uid"`
			Title  string           `json:"title"`
			Panels []map[string]any `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: want a uid, a title and panels", f)
		}
		var walk func(where string, v any)
		walk = func(where string, v any) {
			switch v := v.(type) {
			case map[string]any:
				if title, ok := v["title"].(string); ok {
					where = f + ": " + title
				}
				if ds, ok := v["datasource"].(map[string]any); ok {
					uid, _ := ds["uid"].(string)
					uids[uid] = true
				}
				for k, x := range v {
					if e, ok := x.(string); ok && k == "expr" {
						qs = append(qs, query{where, e})
						continue
					}
					walk(where, x)
				}
			case []any:
				for _, x := range v {
					walk(where, x)
				}
			}
		}
		for _, p := range d.Panels {
			walk(f, p)
			if p["type"] != "row" {
				if ts, _ := p["targets"].([]any); len(ts) == 0 {
					t.Errorf("%s: panel %v has no query", f, p["title"])
				}
			}
		}
	}
	return qs, uids
}

// exportedSamples runs the demo (every processor group, the edge and the
// view API in one process, with the simulator injecting faults) and
// returns the sample names on its operators' /metrics page once every
// name in want is there, or after a minute.
func exportedSamples(t *testing.T, want []string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *demo.Demo, 1)
	done := make(chan error, 1)
	go func() {
		_, err := demo.Run(ctx, demo.Options{
			Devices: 5, Rate: 20, Faults: true, Seed: 7,
			IngestAddr: "127.0.0.1:0", ViewAddr: "127.0.0.1:0", DataDir: t.TempDir(),
			DeviceSecret: "s", ViewKey: "k", Partitions: 2,
			Ready: func(d *demo.Demo) { ready <- d },
		})
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo did not stop cleanly: %v", err)
		}
	})
	var d *demo.Demo
	select {
	case d = <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("demo stopped: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		names := scrape(t, d.OpsURL+"/metrics")
		if !slices.ContainsFunc(want, func(n string) bool { return !names[n] }) || time.Now().After(deadline) {
			return names
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// scrape returns the names of the samples on a Prometheus text page:
// histograms' _bucket, _sum and _count, counters with _total.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(page), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if end := strings.IndexAny(line, "{ "); end > 0 {
			names[line[:end]] = true
		}
	}
	return names
}

// Every query of every dashboard names at least one metric, and every
// metric it names is one that the watershed processes export, as scraped
// from a running demo's operators' listener; the dashboards cover what
// operators look at (issue 17); their data source is the provisioned one.
func TestDashboardsQueryExportedMetrics(t *testing.T) {
	qs, uids := dashboardQueries(t)
	var named []string
	for _, q := range qs {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
		}
		if len(names) == 0 {
			t.Errorf("%s: query %q names no metric", q.where, q.expr)
		}
		for _, n := range names {
			if !slices.Contains(named, n) {
				named = append(named, n)
			}
		}
	}
	for _, w := range []string{
		"watershed_edge_requests_total",               // ingest rate, answers by code
		"watershed_consumer_lag",                      // lag per group
		"watershed_processor_dead_letters_total",      // dead letters by reason
		"watershed_processor_duration_seconds_bucket", // store write latency (the sink group)
		"watershed_group_restarts_total",              // restarts
		"watershed_processor_recovered",               // recovery
	} {
		if !slices.Contains(named, w) {
			t.Errorf("no dashboard shows %s", w)
		}
	}
	exported := exportedSamples(t, named)
	for _, n := range named {
		if !exported[n] {
			t.Errorf("dashboards query %s, which the processes do not export (not on the demo's /metrics)", n)
		}
	}
	var ds struct {
		Datasources []struct {
			UID string `yaml:"uid"`
		} `yaml:"datasources"`
	}
	raw, err := os.ReadFile("provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &ds); err != nil || len(ds.Datasources) != 1 {
		t.Fatalf("provisioning/datasources/prometheus.yml: %v, %d data sources", err, len(ds.Datasources))
	}
	for uid := range uids {
		if uid != ds.Datasources[0].UID {
			t.Errorf("a panel names data source %q, the provisioned one is %q", uid, ds.Datasources[0].UID)
		}
	}
}
