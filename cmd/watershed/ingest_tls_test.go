package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/internal/testcert"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// `watershed ingest` with TLS and a per-device rate from the environment
// serves HTTPS only and answers a device over its rate 429.
func TestIngestServesTLSAndLimitsDevices(t *testing.T) {
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
	for _, topic := range []string{"telemetry.raw", "telemetry.dlq"} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close()
	pair := testcert.Write(t, t.TempDir(), "edge")
	const secret = "ingest-tls-secret-0123456789abcdef"
	t.Setenv("WATERSHED_KAFKA_BROKERS", strings.Join(b.Addrs(), ","))
	t.Setenv("WATERSHED_DEVICE_SECRET", secret)
	t.Setenv("WATERSHED_TLS_CERT", pair.CertFile)
	t.Setenv("WATERSHED_TLS_KEY", pair.KeyFile)
	t.Setenv("WATERSHED_DEVICE_RATE", "0.001")
	t.Setenv("WATERSHED_DEVICE_BURST", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lineWriter{lines: make(chan string, 64)}
	done := make(chan int, 1)
	go func() {
		done <- runIngest(ctx, []string{"--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"}, nil, io.Discard, stderr)
	}()
	url := waitLogURL(t, stderr, done, "ingest edge listening", nil)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("ingest listens on %s, want https", url)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pair.Pool}}}
	pkg, err := protocol.Encode(protocol.Header{Version: 1, DeviceID: 909, BaseTimeMs: 1_773_500_000_000},
		[]protocol.Message{{Type: protocol.TypeEvent, TimeMs: 1_773_500_000_000, Code: 1, Severity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	post := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(pkg))
		req.Header.Set("Authorization", "Bearer "+edge.Token([]byte(secret), 909))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := post(); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("first package over TLS: %d, want 202", resp.StatusCode)
	}
	if resp := post(); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second package at 0.001/s with burst 1: %d (Retry-After %q), want 429 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, err := http.Get("http" + strings.TrimPrefix(url, "https")); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered %d", resp.StatusCode)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after cancel, want 0", code)
	}
}
