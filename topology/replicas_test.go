package topology_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
	"github.com/watershed-io/watershed/topology/tablestore"
)

type replica struct {
	runner *topology.Runner
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startReplica(t *testing.T, c *counter, k topology.Kafka) *replica {
	t.Helper()
	return startReplicaIn(t, c, k, t.TempDir())
}

// startReplicaIn runs the counter with its local tables in dataDir.
func startReplicaIn(t *testing.T, c *counter, k topology.Kafka, dataDir string) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := promhooks.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := topology.NewRunner(build(t, c.t), topology.RunnerOptions{Kafka: k, DataDir: dataDir, Hooks: []topology.Hook{m}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := promhooks.RegisterRunner(reg, r, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep := &replica{runner: r, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rep.done <- r.Run(ctx) }()
	t.Cleanup(cancel)
	return rep
}

// Two processes of one group share its partitions; when one stops, the
// other takes its partitions over with their table state, and nothing is
// lost or counted twice.
func TestReplicasSharePartitionsAndHandOver(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	c := newCounter(4)
	a := startReplica(t, c, k)
	waitFor(t, 60*time.Second, func() error { return a.runner.Ready() })
	b := startReplica(t, c, k)
	waitFor(t, 60*time.Second, func() error { return b.runner.Ready() })

	const keys = 16
	send := func(round int) {
		var kv []string
		for i := 0; i < keys; i++ {
			kv = append(kv, fmt.Sprint("k", i), "1")
		}
		produce(t, k, c.in.Name(), kv...)
	}
	send(1)
	// Both replicas work once the rebalance settled; all 16 keys reach 1.
	out := readAll(t, k, c.out.Name(), keys, 60*time.Second)
	for _, m := range out {
		if string(m.Value) != "1" {
			t.Fatalf("first round: %s = %s", m.Key, m.Value)
		}
	}
	waitFor(t, 60*time.Second, func() error {
		ca, cb := counterValue(t, a.reg, "watershed_processor_records_consumed_total"), counterValue(t, b.reg, "watershed_processor_records_consumed_total")
		if ca+cb != keys {
			return fmt.Errorf("consumed %v + %v", ca, cb)
		}
		if ca == 0 || cb == 0 {
			return fmt.Errorf("one replica did nothing: %v, %v", ca, cb)
		}
		return nil
	})
	// Each reports the partitions it owns; together they own them all.
	pa, pb := counterValue(t, a.reg, "watershed_processor_partitions"), counterValue(t, b.reg, "watershed_processor_partitions")
	if pa+pb != 4 || pa == 0 || pb == 0 {
		t.Errorf("partitions owned: %v + %v, want 4 shared by both", pa, pb)
	}

	// Stop a gracefully; b takes every partition, with the table.
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("replica a stopped with %v", err)
	}
	send(2)
	out = readAll(t, k, c.out.Name(), 2*keys, 90*time.Second)
	if got := counterValue(t, b.reg, "watershed_processor_partitions"); got != 4 {
		t.Errorf("partitions owned by the replica left: %v, want 4", got)
	}
	final := map[string]string{}
	for _, m := range out {
		final[string(m.Key)] = string(m.Value)
	}
	for i := 0; i < keys; i++ {
		if got := final[fmt.Sprint("k", i)]; got != strconv.Itoa(2) {
			t.Errorf("k%d = %s after the hand-over, want 2", i, got)
		}
	}
}

// A process stopped gracefully leaves its tables, values and offsets, in
// its folder (with the default, batching storage), and a restart on that
// folder continues from them.
func TestRestartContinuesFromTheLocalTables(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	c := newCounter(4)
	dir := t.TempDir()
	const keys = 16
	send := func() {
		var kv []string
		for i := 0; i < keys; i++ {
			kv = append(kv, fmt.Sprint("k", i), "1")
		}
		produce(t, k, c.in.Name(), kv...)
	}

	a := startReplicaIn(t, c, k, dir)
	waitFor(t, 60*time.Second, func() error { return a.runner.Ready() })
	send()
	readAll(t, k, c.out.Name(), keys, 60*time.Second)
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("first run stopped with %v", err)
	}

	parts, err := filepath.Glob(filepath.Join(dir, "tables", "*", "*"))
	if err != nil || len(parts) != 4 {
		t.Fatalf("table partitions on disk: %q, %v; want 4", parts, err)
	}
	stored := 0
	for _, p := range parts {
		st, err := tablestore.Open(p, tablestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		it, err := st.Iterator()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for it.Next() {
			if v, _ := it.Value(); string(v) != "1" {
				t.Errorf("%s: %s = %s on disk, want 1", p, it.Key(), v)
			}
			n++
		}
		it.Release()
		if off, err := st.GetOffset(-1); err != nil || (n > 0 && off < 0) {
			t.Errorf("%s: %d values but offset %d, %v", p, n, off, err)
		}
		stored += n
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if stored != keys {
		t.Fatalf("%d values on disk after a graceful stop, want %d", stored, keys)
	}

	b := startReplicaIn(t, c, k, dir)
	waitFor(t, 60*time.Second, func() error { return b.runner.Ready() })
	send()
	final := map[string]string{}
	for _, m := range readAll(t, k, c.out.Name(), 2*keys, 60*time.Second) {
		final[string(m.Key)] = string(m.Value)
	}
	for i := 0; i < keys; i++ {
		if got := final[fmt.Sprint("k", i)]; got != "2" {
			t.Errorf("k%d = %s after the restart, want 2", i, got)
		}
	}
}
