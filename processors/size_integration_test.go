//go:build integration

package processors_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/testinfra"
	"github.com/watershed-io/watershed/topology"
)

// TestIntegrationLargestPackage (issue 13, hole 4): an incompressible
// package of the largest size the edge accepts, 1,048,612 bytes, is
// answered 202 by the edge on a real Kafka broker (whose default
// max.message.bytes, 1,048,588, refused it: 503 forever), and decode then
// dead-letters it whole, with its reason, and goes on (its envelope, larger
// still, fits the dead-letter topic) instead of failing in a loop.
func TestIntegrationLargestPackage(t *testing.T) {
	k := topology.Kafka{Brokers: testinfra.Kafka(t), ClientID: "size-test"}
	prefix := testinfra.UniqueName(t, "sz", 40) + "."
	p := processors.New(processors.Config{Prefix: prefix, Partitions: 1, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, stop := runReady(t, ctx, p.Topology, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(),
		Groups: []string{processors.GroupDecode}, Logger: slog.New(slog.DiscardHandler)})
	defer stop()

	secret := []byte("size-test-device-secret-01234567")
	e, err := edge.New(edge.Options{Kafka: k, RawTopic: p.Raw.Name(), DeadLetterTopic: p.DeadLetters.Name(),
		Secret: secret, EdgeID: "size-test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	// A version 2 header and an uncompressed body of MaxBodyLen random
	// bytes: it passes the edge's checks, and snappy cannot shrink it.
	body := make([]byte, protocol.MaxBodyLen)
	rng := rand.New(rand.NewChaCha8([32]byte{13, 4}))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	const device = 77
	pkg := protocol.AssemblePackage(nil, protocol.Header{Version: 2, DeviceID: device, PackageSeq: 1,
		BaseTimeMs: uint64(time.Now().UnixMilli()), MessageCount: 4096}, body)
	if len(pkg) != edge.MaxPackageBytes {
		t.Fatalf("package of %d bytes, want the limit %d", len(pkg), edge.MaxPackageBytes)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/packages", bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+edge.Token(secret, device))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the largest package was answered %d, want 202", resp.StatusCode)
	}

	// decode dead-letters the package with its reason, and commits it.
	var dead []records.Envelope
	testinfra.Eventually(t, 90*time.Second, 200*time.Millisecond, func() error {
		if dead = deadLetters(t, ctx, k, p); len(dead) == 0 {
			return fmt.Errorf("no dead letter yet")
		}
		return nil
	})
	whole := false
	for _, d := range dead {
		if d.Stage != prefix+processors.GroupDecode || d.Reason == "" || string(d.Key) != "77" {
			t.Errorf("dead letter %s/%q key %q", d.Stage, d.Reason, d.Key)
		}
		whole = whole || bytes.Equal(d.Value, pkg)
		for _, h := range d.Headers {
			if h.Key == topology.HeaderValueTruncated {
				t.Errorf("the envelope of a package at the limit was cut (%s bytes)", h.Value)
			}
		}
	}
	if !whole {
		t.Errorf("no dead letter holds the whole package: %d envelopes, reasons %v", len(dead), reasons(dead))
	}
	waitCommitted(t, ctx, r)
}

func reasons(es []records.Envelope) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Reason)
	}
	return out
}

// runReady starts a runner of tp with opts on real Kafka, waits until it is
// ready, and returns it with the function that stops it and checks its
// outcome.
func runReady(t *testing.T, ctx context.Context, tp *topology.Topology, opts topology.RunnerOptions) (r *topology.Runner, stop func()) {
	t.Helper()
	r, err := topology.NewRunner(builtPlan(t, tp), opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	stop = func() {
		cancel()
		if err := stopped(t, done); err != nil {
			t.Errorf("run: %v", err)
		}
	}
	if err := testinfra.WaitFor(90*time.Second, 100*time.Millisecond, r.Ready); err != nil {
		stop()
		t.Fatalf("runner not ready: %v", err)
	}
	return r, stop
}
