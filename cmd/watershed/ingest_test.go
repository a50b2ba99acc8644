package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// clearIngestEnv unsets every variable runIngest reads, for this test.
func clearIngestEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{
		"WATERSHED_KAFKA_BROKERS", "WATERSHED_CLIENT_ID", "WATERSHED_REPLICATION", "WATERSHED_PREFIX",
		"WATERSHED_INGEST_ADDR", "WATERSHED_DEVICE_SECRET", "WATERSHED_PREVIOUS_DEVICE_SECRET",
		"WATERSHED_RAW_TOPIC", "WATERSHED_DLQ_TOPIC", "WATERSHED_EDGE_ID",
		"WATERSHED_MAX_INFLIGHT_BYTES", "WATERSHED_PRODUCE_TIMEOUT", "WATERSHED_LOG_LEVEL",
		"WATERSHED_DEVICE_RATE", "WATERSHED_DEVICE_BURST", "WATERSHED_TLS_CERT", "WATERSHED_TLS_KEY", "WATERSHED_MAX_REQUESTS",
		"WATERSHED_OPS_ADDR", "WATERSHED_DEVICE_SECRET_FILE", "WATERSHED_PREVIOUS_DEVICE_SECRET_FILE",
		"WATERSHED_KAFKA_SASL_USER", "WATERSHED_KAFKA_SASL_PASSWORD", "WATERSHED_KAFKA_SASL_PASSWORD_FILE",
		"WATERSHED_ACCEPT_V1_TOKENS", "WATERSHED_REVOCATION_FILE", "WATERSHED_MAX_DEVICE_INFLIGHT", "WATERSHED_MAX_UNAUTHENTICATED_PER_CLIENT",
		"WATERSHED_MAX_CONNS_PER_CLIENT", "WATERSHED_TRUSTED_PROXIES", "WATERSHED_PROXY_HEADER", "WATERSHED_BODY_TIMEOUT", "WATERSHED_MIN_BODY_RATE",
		"WATERSHED_DEVICE_BYTE_RATE", "WATERSHED_DEVICE_BYTE_BURST",
	} {
		t.Setenv(name, "") // restores the old value after the test
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
}

// longSecret is a device secret of the required length.
const longSecret = "ingest-test-secret-0123456789abcdef"

func TestIngestFlagErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		says string
	}{
		{"missing secret", nil, []string{"--brokers", "127.0.0.1:1"}, 2, "device secret"},
		{"empty secret from env", map[string]string{"WATERSHED_DEVICE_SECRET": ""}, []string{"--brokers", "127.0.0.1:1"}, 2, "device secret"},
		{"missing brokers", map[string]string{"WATERSHED_DEVICE_SECRET": longSecret}, nil, 2, "brokers"},
		{"bad timeout from env", map[string]string{"WATERSHED_PRODUCE_TIMEOUT": "soon"}, []string{"--brokers", "b:9092", "--device-secret", longSecret}, 2, "WATERSHED_PRODUCE_TIMEOUT"},
		{"bad budget from env", map[string]string{"WATERSHED_MAX_INFLIGHT_BYTES": "lots"}, []string{"--brokers", "b:9092", "--device-secret", longSecret}, 2, "WATERSHED_MAX_INFLIGHT_BYTES"},
		{"budget too small", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--max-inflight-bytes", "1000"}, 2, "max-inflight-bytes"},
		{"zero timeout", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--produce-timeout", "0s"}, 2, "produce-timeout"},
		{"negative device rate", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--device-rate", "-1"}, 2, "device-rate"},
		{"rate without burst", map[string]string{"WATERSHED_DEVICE_BURST": "0"}, []string{"--brokers", "b:9092", "--device-secret", longSecret}, 2, "device-burst"},
		{"bad rate from env", map[string]string{"WATERSHED_DEVICE_RATE": "fast"}, []string{"--brokers", "b:9092", "--device-secret", longSecret}, 2, "WATERSHED_DEVICE_RATE"},
		{"cert without key", map[string]string{"WATERSHED_TLS_CERT": "c.pem"}, []string{"--brokers", "b:9092", "--device-secret", longSecret}, 2, "tls-key"},
		{"no requests", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--max-requests", "0"}, 2, "max-requests"},
		{"short secret", nil, []string{"--brokers", "b:9092", "--device-secret", "short-but-secret"}, 2, "--insecure-short-secret"},
		{"short previous secret", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--previous-device-secret", "short-but-secret"}, 2, "previous device secret"},
		{"bad trusted proxy", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--trusted-proxies", "10.0.0.0/8,proxy"}, 2, "trusted-proxies"},
		{"byte burst under a package", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "--device-byte-burst", "1000"}, 2, "device-byte-burst"},
		{"no device in flight", map[string]string{"WATERSHED_MAX_DEVICE_INFLIGHT": "0"}, []string{"--brokers", "b:9092", "--device-secret", longSecret}, 2, "max-device-inflight"},
		{"missing revocation file", nil, []string{"--brokers", "127.0.0.1:1", "--device-secret", longSecret, "--revocation-file", "/nonexistent/revoked"}, 1, "revocation file"},
		{"unknown flag", nil, []string{"--nope"}, 2, "nope"},
		{"extra argument", nil, []string{"--brokers", "b:9092", "--device-secret", longSecret, "extra"}, 2, "extra"},
		{"help", nil, []string{"-h"}, 0, "WATERSHED_DEVICE_SECRET"},
		{"missing secret file", nil, []string{"--brokers", "b:9092", "--device-secret-file", "/nonexistent/secret"}, 2, "--device-secret-file"},
		{"secret and file", map[string]string{"WATERSHED_DEVICE_SECRET": "s", "WATERSHED_DEVICE_SECRET_FILE": "/nonexistent"}, []string{"--brokers", "b:9092"}, 2, "both set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearIngestEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := runIngest(context.Background(), c.args, strings.NewReader(""), &stdout, &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.says) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr.String(), c.code, c.says)
			}
			if strings.Contains(stderr.String(), "short-but-secret") {
				t.Errorf("stderr shows the secret: %q", stderr.String())
			}
		})
	}
}

func TestIngestHelpDocumentsEveryEnvironmentVariable(t *testing.T) {
	clearIngestEnv(t)
	var stderr bytes.Buffer
	runIngest(context.Background(), []string{"-h"}, nil, io.Discard, &stderr)
	for _, env := range []string{
		"WATERSHED_KAFKA_BROKERS", "WATERSHED_INGEST_ADDR", "WATERSHED_DEVICE_SECRET", "WATERSHED_PREVIOUS_DEVICE_SECRET",
		"WATERSHED_RAW_TOPIC", "WATERSHED_DLQ_TOPIC", "WATERSHED_EDGE_ID", "WATERSHED_MAX_INFLIGHT_BYTES", "WATERSHED_PRODUCE_TIMEOUT",
		"WATERSHED_DEVICE_RATE", "WATERSHED_DEVICE_BURST", "WATERSHED_TLS_CERT", "WATERSHED_TLS_KEY", "WATERSHED_MAX_REQUESTS",
		"WATERSHED_OPS_ADDR", "WATERSHED_DEVICE_SECRET_FILE", "WATERSHED_PREVIOUS_DEVICE_SECRET_FILE", "WATERSHED_KAFKA_SASL_PASSWORD_FILE",
		"WATERSHED_ACCEPT_V1_TOKENS", "WATERSHED_REVOCATION_FILE", "WATERSHED_MAX_DEVICE_INFLIGHT", "WATERSHED_MAX_UNAUTHENTICATED_PER_CLIENT",
		"WATERSHED_MAX_CONNS_PER_CLIENT", "WATERSHED_TRUSTED_PROXIES", "WATERSHED_PROXY_HEADER", "WATERSHED_BODY_TIMEOUT", "WATERSHED_MIN_BODY_RATE",
		"WATERSHED_DEVICE_BYTE_RATE", "WATERSHED_DEVICE_BYTE_BURST",
	} {
		if !strings.Contains(stderr.String(), env) {
			t.Errorf("usage does not mention %s", env)
		}
	}
}

// lineWriter hands each complete line written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		select {
		case w.lines <- line:
		default: // the test stopped listening
		}
	}
}

func TestIngestServesTheEdgeAndStopsGracefully(t *testing.T) {
	clearIngestEnv(t)
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := topology.Kafka{Brokers: b.Addrs()}
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"x.telemetry.raw", "x.telemetry.dlq"} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close()

	const secret = longSecret
	revoked := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(revoked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WATERSHED_KAFKA_BROKERS", strings.Join(b.Addrs(), ","))
	t.Setenv("WATERSHED_DEVICE_SECRET", "wrong, overridden by the flag")
	t.Setenv("WATERSHED_PREFIX", "x.")
	t.Setenv("WATERSHED_EDGE_ID", "edge-from-env")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lineWriter{lines: make(chan string, 64)}
	done := make(chan int, 1)
	go func() {
		done <- runIngest(ctx, []string{"--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--device-secret", secret, "--revocation-file", revoked}, nil, io.Discard, stderr)
	}()

	var addr, opsURL string
	deadline := time.After(30 * time.Second)
	for addr == "" {
		select {
		case line := <-stderr.lines:
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
				URL  string `json:"url"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("log line %q is not JSON: %v", line, err)
			}
			switch entry.Msg {
			case "ingest edge listening":
				addr = entry.Addr
			case "operators' listener":
				opsURL = entry.URL
			}
		case code := <-done:
			t.Fatalf("ingest stopped with %d before listening", code)
		case <-deadline:
			t.Fatal("ingest did not start listening")
		}
	}
	base := "http://" + addr

	pkg, err := protocol.Encode(protocol.Header{Version: 1, DeviceID: 808, BaseTimeMs: 1_773_500_000_000},
		[]protocol.Message{{Type: protocol.TypeEvent, TimeMs: 1_773_500_000_000, Code: 1, Severity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	post := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+edge.Path, bytes.NewReader(pkg))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	if code, body := post(edge.Token([]byte(secret), 808)); code != http.StatusAccepted {
		t.Fatalf("POST: %d %s", code, body)
	}
	// A version 2 token of `watershed token`.
	var tok bytes.Buffer
	if code := runToken(context.Background(), []string{"--device", "808", "--ttl", "1h", "--device-secret", secret}, nil, &tok, io.Discard); code != 0 {
		t.Fatalf("watershed token exit %d", code)
	}
	v2 := strings.TrimSpace(tok.String())
	if code, body := post(v2); code != http.StatusAccepted {
		t.Fatalf("POST with the v2 token: %d %s", code, body)
	}
	// Revoked on SIGHUP (or the file watcher), without a restart.
	if err := os.WriteFile(revoked, []byte("808\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for stop := time.Now().Add(30 * time.Second); ; {
		code, body := post(v2)
		if code == http.StatusUnauthorized {
			break
		}
		if code != http.StatusAccepted || time.Now().After(stop) {
			t.Fatalf("POST with a revoked token: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if opsURL == "" {
		t.Fatal("no operators' listener logged before the edge listened")
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	for url, want := range map[string]string{
		base + "/readyz":         "ready",
		base + "/healthz":        "ok",
		opsURL + "/readyz":       "ready",
		opsURL + "/healthz":      "ok",
		opsURL + "/metrics":      `watershed_edge_v1_tokens_total 1`,
		opsURL + "/debug/pprof/": "goroutine",
	} {
		if code, body := get(url); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, body lacks %q", url, code, want)
		}
	}
	// The public listener serves neither metrics nor the profiler.
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		if code, _ := get(base + path); code != http.StatusNotFound {
			t.Errorf("public GET %s: %d, want 404", path, code)
		}
	}

	// The record is in the prefixed raw topic, with the edge id from the
	// environment.
	c, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition("x.telemetry.raw", topology.Partition([]byte("808"), 2), sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if !bytes.Equal(m.Value, pkg) || string(m.Key) != "808" {
			t.Errorf("record %q = %x", m.Key, m.Value)
		}
		for _, h := range m.Headers {
			if string(h.Key) == edge.HeaderEdgeID && string(h.Value) != "edge-from-env" {
				t.Errorf("edge id header %q", h.Value)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no record in x.telemetry.raw")
	}

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after cancel, want 0", code)
	}
}

// An edge started while no broker answers (restarted during a network
// fault) waits for the brokers instead of exiting, and stops cleanly
// while it waits.
func TestIngestWaitsForTheBrokersAtStart(t *testing.T) {
	clearIngestEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	away := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- runIngest(ctx, []string{"--brokers", away, "--addr", "127.0.0.1:0", "--device-secret", longSecret}, nil, io.Discard, io.Discard)
	}()
	select {
	case code := <-done:
		t.Fatalf("ingest exited with %d while the brokers were away, want it to wait", code)
	case <-time.After(3 * time.Second):
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("ingest stopped while waiting with %d, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ingest did not stop while waiting for the brokers")
	}
}
