//go:build integration

package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
)

// recovery is one measured failover.
type recovery struct {
	Group string `json:"group"`
	// KillToSetupS: from the SIGKILL until the survivor began the new
	// generation's setup (the broker noticed the dead member: session
	// time-out, then the rebalance).
	KillToSetupS float64 `json:"kill_to_setup_s"`
	// SetupToReadyS: from that setup until the survivor's /readyz answered
	// 200 again, its tables recovered (watershed_processor_recovered 1).
	SetupToReadyS float64 `json:"setup_to_ready_s"`
	// TotalS: from the kill until ready.
	TotalS float64 `json:"total_s"`
}

// TestIntegrationFaultsRecoveryTime measures the table recovery after a
// replica dies: two replicas of each table group (dedupe, device-state)
// with tables filled by a fleet of devices; one replica of each is killed
// with SIGKILL, and the survivor's time until it has taken over the
// partitions with their tables is measured, first without and then with
// --hot-standby.
func TestIntegrationFaultsRecoveryTime(t *testing.T) {
	e := setup(t)
	pfx := prefix(t)
	const partitions = 4
	e.ensureTopics(t, pfx, partitions)
	groups := []string{processors.GroupDecode, processors.GroupDedupe, processors.GroupDeviceState}
	measured := []string{processors.GroupDedupe, processors.GroupDeviceState}

	// Fill the tables, then measure without hot standby.
	cold := e.cluster(t, Config{Prefix: pfx, Partitions: partitions, Edges: 1, Groups: groups, Replicas: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	sim, err := simulator.New(simulator.Options{
		IngestURL: cold.Edges[0].URL, Secret: []byte(deviceSecret), Devices: 2000, Rate: 200, Duration: 20 * time.Second,
		Seed: 6, Faults: simulator.NoFaults(), Concurrency: 16, Logger: e.log.With("component", "simulator"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(ctx); err != nil {
		t.Fatalf("simulator: %v", err)
	}
	sum := sim.Summary()
	t.Logf("tables filled by %d packages, %d messages of %d devices", sum.Sent, sum.Messages, sum.Devices)
	results := map[string][]recovery{}
	results["cold"] = measureFailover(ctx, t, cold, measured)
	cold.Close()

	// The same installation with hot standby: fresh processes whose
	// standby copies are recovered when they report ready.
	hot := e.cluster(t, Config{Prefix: pfx, Partitions: partitions, Edges: 1, Groups: groups, Replicas: 2, HotStandby: true})
	results["hot_standby"] = measureFailover(ctx, t, hot, measured)
	report(t, map[string]any{
		"devices": sum.Devices, "messages": sum.Messages, "partitions": partitions,
		"recovery": results, "machine": machine(),
	})
}

// measureFailover kills the second replica of every measured group at
// once and times each survivor's takeover.
func measureFailover(ctx context.Context, t *testing.T, c *Cluster, groups []string) []recovery {
	t.Helper()
	type watch struct {
		group            string
		survivor         *Node
		setups           int
		setupAt, readyAt time.Time
	}
	var ws []*watch
	for _, g := range groups {
		reps := c.Replicas[g]
		if len(reps) < 2 {
			t.Fatalf("group %s has %d replicas, need 2", g, len(reps))
		}
		n, err := countSetups(reps[0].LogPath())
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, &watch{group: g, survivor: reps[0], setups: n})
	}
	killed := time.Now()
	for _, g := range groups {
		victim := c.Replicas[g][1]
		c.Hold(victim)
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range ws {
		// The survivor logs "setup generation" when the new generation
		// begins; its /readyz answers 200 once the setup, table recovery
		// included, is done.
		err := Poll(ctx, 3*time.Minute, 20*time.Millisecond, func() error {
			if w.setupAt.IsZero() {
				at, err := setupAfter(w.survivor.LogPath(), w.setups)
				if err != nil {
					return err
				}
				w.setupAt = at
			}
			if err := w.survivor.Ready(ctx); err != nil {
				return err
			}
			w.readyAt = time.Now()
			return nil
		})
		if err != nil {
			t.Fatalf("%s did not take over: %v", w.survivor.Name(), err)
		}
	}
	var out []recovery
	for _, w := range ws {
		setup := w.setupAt
		if setup.Before(killed) {
			setup = killed
		}
		out = append(out, recovery{Group: w.group, KillToSetupS: setup.Sub(killed).Seconds(),
			SetupToReadyS: max(0, w.readyAt.Sub(setup).Seconds()), TotalS: w.readyAt.Sub(killed).Seconds()})
	}
	// Bring the victims back, so the installation is whole again.
	for _, g := range groups {
		if err := c.Release(c.Replicas[g][1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitReady(ctx, 3*time.Minute); err != nil {
		t.Fatalf("not ready after the failover: %v", err)
	}
	return out
}

// logLine is the part of a JSON log line the measurement reads.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// countSetups counts goka's "[Processor G] setup generation N" lines in a
// process log.
func countSetups(path string) (int, error) {
	n := 0
	err := scanLog(path, func(l logLine) bool {
		if strings.Contains(l.Msg, "] setup generation ") {
			n++
		}
		return true
	})
	return n, err
}

// setupAfter returns the time of the setup line after the first skip ones,
// or an error while there is none.
func setupAfter(path string, skip int) (time.Time, error) {
	var at time.Time
	n := 0
	err := scanLog(path, func(l logLine) bool {
		if strings.Contains(l.Msg, "] setup generation ") {
			n++
			if n > skip {
				at = l.Time
				return false
			}
		}
		return true
	})
	if err != nil {
		return at, err
	}
	if at.IsZero() {
		return at, fmt.Errorf("no new setup in %s yet", path)
	}
	return at, nil
}

// scanLog calls f with every JSON line of the log until f returns false.
func scanLog(path string, f func(logLine) bool) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("faults: open log: %w", err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if !f(l) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("faults: read log: %w", err)
	}
	return nil
}
