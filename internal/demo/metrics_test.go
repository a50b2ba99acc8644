package demo_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/internal/demo"
)

// Every metric family the pipeline exposes, scraped from the operators'
// listener's /metrics page while devices send, passes `promtool check metrics` and is named
// watershed_*, go_* or process_*.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run `make tools` (Debian package prometheus)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *demo.Demo, 1)
	done := make(chan error, 1)
	go func() {
		_, err := demo.Run(ctx, demo.Options{
			Devices: 5, Rate: 20, Faults: true, Seed: 3,
			IngestAddr: "127.0.0.1:0", ViewAddr: "127.0.0.1:0", DataDir: t.TempDir(),
			DeviceSecret: "s", ViewKey: "k", Partitions: 2,
			Ready: func(d *demo.Demo) { ready <- d },
		})
		done <- err
	}()
	var d *demo.Demo
	select {
	case d = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped: %v", err)
	}
	// Wait until every stage has handled records, so every family has series.
	want := []string{
		"watershed_edge_requests_total", "watershed_processor_records_consumed_total",
		"watershed_processor_dead_letters_total", "watershed_consumer_lag", "watershed_view_requests_total",
		"watershed_dlq_records", "watershed_retry_records",
	}
	var page string
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, d.ViewURL+"/v1/devices/1", nil)
		req.Header.Set("Authorization", "Bearer k")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		resp, err := http.Get(d.OpsURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page = string(b)
		missing := ""
		for _, w := range want {
			if !strings.Contains(page, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on /metrics after 60s", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The public listeners serve no metrics.
	for _, base := range []string{d.IngestURL, d.ViewURL} {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s/metrics = %d, want 404: metrics are on the operators' listener", base, resp.StatusCode)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(page, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name = strings.Fields(name)[0]
			if !strings.HasPrefix(name, "watershed_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
				t.Errorf("metric %s is not named watershed_*", name)
			}
			if strings.HasPrefix(name, "watershed_") && !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("metric %s is not documented in docs/operations.md", name)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo did not stop cleanly: %v", err)
	}
}
