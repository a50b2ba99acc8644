//go:build integration

package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/simulator"
)

// TestIntegrationFaultsEdgeBrokerDown: while the Kafka broker is down, the
// edge answers every valid package 503 with Retry-After and never 202;
// once the broker is back on its data, it accepts again.
func TestIntegrationFaultsEdgeBrokerDown(t *testing.T) {
	e := setup(t)
	pfx := prefix(t)
	e.ensureTopics(t, pfx, 4)
	c := e.cluster(t, Config{Prefix: pfx, Partitions: 4, Edges: 1, Groups: []string{}, Replicas: 0})
	edge := c.Edges[0]
	fleet, err := simulator.NewFleet(simulator.FleetConfig{Seed: 6, Devices: 8, Secret: []byte(deviceSecret), Faults: simulator.NoFaults()})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	// A Fleet is not safe for concurrent use; the posts below run in
	// parallel.
	var fleetMu sync.Mutex
	// busy marks the devices with a request under way: a device has at
	// most a few packages in flight (the edge answers more 429), so each
	// concurrent request is of another device.
	busy := map[uint64]bool{}
	post := func() (int, string, error) {
		fleetMu.Lock()
		var p *simulator.Package
		var err error
		for {
			if p, err = fleet.Next(); err != nil || !busy[p.Device] {
				break
			}
		}
		if err != nil {
			fleetMu.Unlock()
			return 0, "", err
		}
		busy[p.Device] = true
		fleetMu.Unlock()
		defer func() {
			fleetMu.Lock()
			delete(busy, p.Device)
			fleetMu.Unlock()
		}()
		req, err := http.NewRequest(http.MethodPost, edge.URL+simulator.PackagesPath, bytes.NewReader(p.Bytes))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+p.Token)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}
	if code, _, err := post(); err != nil || code != http.StatusAccepted {
		t.Fatalf("with the broker up: %d, %v; want 202", code, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stopped := time.Now()
	if err := e.infra.Stop(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed { // leave the broker running for the next test
			_ = e.infra.Resume(context.Background(), "kafka")
		}
	})

	// Packages in rounds of concurrent requests, each waiting for the
	// edge's produce time-out.
	answers := map[int]int{}
	var mu sync.Mutex
	var problems []string
	for range 3 {
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, retryAfter, err := post()
				mu.Lock()
				defer mu.Unlock()
				answers[code]++
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("request failed: %v", err))
				case code != http.StatusServiceUnavailable:
					problems = append(problems, fmt.Sprintf("answered %d while the broker was down, want 503", code))
				case retryAfter == "":
					problems = append(problems, "503 without Retry-After")
				}
			}()
		}
		wg.Wait()
	}
	down := time.Since(stopped)
	for _, p := range problems {
		t.Error(p)
	}
	if answers[http.StatusAccepted] > 0 {
		t.Errorf("the edge answered 202 %d times while the broker was down", answers[http.StatusAccepted])
	}

	if err := e.infra.Resume(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	resumed = true
	back := time.Now()
	var firstAccept time.Duration
	err = Poll(ctx, 2*time.Minute, 500*time.Millisecond, func() error {
		code, _, err := post()
		if err != nil {
			return err
		}
		if code != http.StatusAccepted {
			return fmt.Errorf("answered %d", code)
		}
		firstAccept = time.Since(back)
		return nil
	})
	if err != nil {
		t.Fatalf("the edge does not accept again after the broker came back: %v", err)
	}
	report(t, map[string]any{
		"answers_while_down": answers, "broker_down_s": down.Seconds(),
		"first_202_after_broker_ready_s": firstAccept.Seconds(),
	})
}
