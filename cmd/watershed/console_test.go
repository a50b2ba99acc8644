package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

// `watershed view` serves the console on its operators' listener, behind
// its keys, with the figures of the /metrics pages given by
// --console-metrics.
func TestViewServesTheConsole(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := processors.New(processors.Config{Partitions: 2}).Topology.EnsureTopics(topology.Kafka{Brokers: b.Addrs()}, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# TYPE watershed_processor_recovered gauge\nwatershed_processor_recovered{group=\"decode\"} 1\n"+
			"# TYPE watershed_processor_partitions gauge\nwatershed_processor_partitions{group=\"decode\"} 2\n")
	}))
	defer metrics.Close()
	const key = "console-test-key-0123456789abcdef"
	t.Setenv("WATERSHED_VIEW_KEY", key)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lineWriter{lines: make(chan string, 256)}
	done := make(chan int, 1)
	go func() {
		done <- runView(ctx, registry(), []string{"--brokers", strings.Join(b.Addrs(), ","), "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--partitions", "2", "--console-metrics", metrics.URL + "/metrics",
			// Nothing answers there: the view starts all the same and
			// connects at the first read of the history.
			"--history-store", "cassandra", "--cassandra-hosts", "127.0.0.1:1"}, nil, io.Discard, stderr)
	}()
	url := waitLogURL(t, stderr, done, "console listening", func(line string) {
		if strings.Contains(line, key) {
			t.Fatalf("a log line holds the key: %s", line)
		}
	})
	get := func(path, key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("", ""); code != 200 || !strings.Contains(body, "login-form") {
		t.Errorf("page: %d %s", code, body)
	}
	if code, _ := get("api/topology", ""); code != 401 {
		t.Errorf("topology without a key: %d", code)
	}
	code, body := get("api/topology", key)
	if code != 200 {
		t.Fatalf("topology: %d %s", code, body)
	}
	var top struct {
		Groups map[string]struct {
			Health string `json:"health"`
		} `json:"groups"`
		MetricsSource string `json:"metrics_source"`
	}
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		t.Fatal(err)
	}
	if top.Groups["decode"].Health != "ok" || top.Groups["dedupe"].Health != "down" || top.MetricsSource != "/metrics of 1 processes" {
		t.Errorf("topology: %s", body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("view exited %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("view did not stop")
	}
}

// waitLogURL waits for the JSON log line msg of a command running with
// stderr w and returns its url; each line read is handed to check (when
// not nil) first.
func waitLogURL(t *testing.T, w *lineWriter, done <-chan int, msg string, check func(line string)) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line := <-w.lines:
			if check != nil {
				check(line)
			}
			var entry struct {
				Msg string `json:"msg"`
				URL string `json:"url"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err == nil && entry.Msg == msg {
				return entry.URL
			}
		case code := <-done:
			t.Fatalf("the command stopped with %d before %q", code, msg)
		case <-deadline:
			t.Fatalf("no %q in the log", msg)
		}
	}
}
