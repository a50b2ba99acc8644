//go:build integration

package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/testinfra"
)

// TestIntegrationBenchKafkaCassandra runs the benchmark briefly against
// the real Kafka and Cassandra of the integration scripts, so that the
// path measured for docs/benchmarks.md cannot rot: every package sent must
// reach the view and the Cassandra store, counted exactly. Nothing about
// timing is asserted.
func TestIntegrationBenchKafkaCassandra(t *testing.T) {
	brokers, hosts := testinfra.Kafka(t), testinfra.Cassandra(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	user, password := testinfra.CassandraLogin(t)
	store, err := cassandra.Open(ctx, cassandra.Options{Hosts: hosts, Keyspace: testinfra.CreateKeyspace(t, hosts),
		Timeout: 20 * time.Second, Username: user, Password: password})
	if err != nil {
		t.Fatalf("open the Cassandra store: %v", err)
	}
	defer store.Close()

	rep, err := Run(ctx, Options{
		Brokers: brokers, Store: store, StoreName: "cassandra",
		Devices: 200, Rate: 2000, Duration: 3 * time.Second, Warmup: time.Second,
		Workers: 16, Partitions: 4, Faults: simulator.DefaultFaultMix(), FaultsName: "default",
		Seed: 5, DataDir: t.TempDir(), DrainTimeout: 2 * time.Minute, SampleEvery: time.Second,
		NoBaselines: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Consistency
	if len(c.Problems) > 0 {
		t.Errorf("problems: %q", c.Problems)
	}
	if rep.Sending.Packages == 0 || c.ExpectedStored == 0 {
		t.Fatalf("nothing sent or nothing to store: %+v", rep.Sending)
	}
	if c.StoredRows != c.ExpectedStored || c.ViewMessages != c.ExpectedStored {
		t.Errorf("Cassandra acknowledged %d rows, the view counts %d stored messages, want %d", c.StoredRows, c.ViewMessages, c.ExpectedStored)
	}
	if !strings.HasPrefix(rep.Workload.Broker, "kafka ") || rep.Workload.Store != "cassandra" {
		t.Errorf("report names broker %q and store %q", rep.Workload.Broker, rep.Workload.Store)
	}
	if rep.ViewSamples == 0 || rep.StoreSamples == 0 {
		t.Errorf("no latency samples: view %d, store %d", rep.ViewSamples, rep.StoreSamples)
	}
}

// TestIntegrationCatchUpKafka runs a small catch-up against the real Kafka
// of the integration scripts: every group drains its inputs, the store and
// the device-state table agree with the workload, and the goka peer drains
// the same raw topic. Nothing about timing is asserted.
func TestIntegrationCatchUpKafka(t *testing.T) {
	brokers := testinfra.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := CatchUp(ctx, Options{
		Brokers: brokers, Devices: 200, Partitions: 4, Seed: 5, DataDir: t.TempDir(),
	}, CatchUpOptions{Messages: 10_000, Variants: []processors.Fusion{processors.FuseNone}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 || len(rep.Peers) != 1 {
		t.Fatalf("%d runs and %d peers, want 1 and 1", len(rep.Runs), len(rep.Peers))
	}
	run := rep.Runs[0]
	if len(run.Problems) > 0 {
		t.Errorf("problems: %q", run.Problems)
	}
	if !strings.HasPrefix(run.Broker, "kafka ") || len(run.Groups) == 0 || run.Groups[0].Records != rep.Packages {
		t.Errorf("broker %q, groups %+v, raw packages %d", run.Broker, run.Groups, rep.Packages)
	}
	if rep.Peers[0].Records != rep.Packages {
		t.Errorf("the goka peer drained %d of %d packages", rep.Peers[0].Records, rep.Packages)
	}
}
