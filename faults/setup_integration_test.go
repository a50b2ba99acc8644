//go:build integration

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/testinfra"
	"github.com/watershed-io/watershed/topology"
)

// Environment variables that size the fault test.
const (
	// EnvDuration is how long the simulator runs while faults are
	// injected (default 150s: the CI size `make integration` runs; `make
	// faults` sets 30m). Fault cycles repeat while the run lasts.
	EnvDuration = "WATERSHED_FAULTS_DURATION"
	// EnvReplicas is the replicas of every processor group (default 2).
	EnvReplicas = "WATERSHED_FAULTS_REPLICAS"
	// EnvRate is the simulator's packages per second (default 25).
	EnvRate = "WATERSHED_FAULTS_RATE"
	// EnvReport, when set, is a file the tests write their figures to as
	// JSON (docs/reliability.md quotes them).
	EnvReport = "WATERSHED_FAULTS_REPORT"
)

const (
	deviceSecret = "faults-device-secret-0123456789abcdef"
	viewKey      = "faults-view-key-0123456789abcdef"
)

// env is what every fault test needs: the binary, the services and a
// logger.
type env struct {
	root  string
	bin   string
	infra *Infra
	kafka topology.Kafka
	log   *slog.Logger
}

// setup builds the binary and finds the services: those of the
// environment when `make integration` or `make faults` started them
// (WATERSHED_KAFKA_BROKERS set), else a private pair started here with
// scripts/infra/infra.sh and stopped at the end.
func setup(t *testing.T) *env {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := BuildBinary(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "infra", "infra.sh")
	var in *Infra
	if os.Getenv(testinfra.EnvKafkaBrokers) != "" {
		in = &Infra{Script: script, Brokers: testinfra.Kafka(t), CassandraHosts: testinfra.Cassandra(t), Log: log}
	} else {
		dir, err := os.MkdirTemp("", "watershed-faults-infra-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		t.Logf("%s is not set: starting a private Kafka and Cassandra with infra.sh in %s", testinfra.EnvKafkaBrokers, dir)
		in, err = PrivateInfra(ctx, root, dir, log)
		if in != nil || err != nil {
			t.Cleanup(func() {
				if in != nil {
					_ = in.Close()
				}
			})
		}
		if err != nil {
			t.Fatal(err)
		}
		// The private services' addresses and logins, for the test's own
		// clients and, inherited, for the processes.
		lines, err := in.EnvLines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			k, v, _ := strings.Cut(l, "=")
			t.Setenv(k, v)
		}
	}
	return &env{root: root, bin: bin, infra: in, log: log,
		kafka: topology.Kafka{Brokers: in.Brokers, ClientID: "faults-test", Replication: 1}}
}

// prefix returns a topic and group prefix unique to the test.
func prefix(t *testing.T) string {
	return testinfra.UniqueName(t, "f", 24) + "."
}

// ensureTopics creates the pipeline's topics under prefix before any
// process starts, so that the replicas do not race to create them.
func (e *env) ensureTopics(t *testing.T, prefix string, partitions int) *processors.Pipeline {
	t.Helper()
	p := processors.New(processors.Config{Prefix: prefix, Partitions: int32(partitions)})
	if _, err := p.Topology.EnsureTopics(e.kafka, topology.TopicOptions{}); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	return p
}

// openStore opens the readings store in a keyspace of its own with
// replication rf (dropped at the end), creating its schema before the sink
// replicas start; every node knows the schema when it returns.
func (e *env) openStore(t *testing.T, rf int) (*cassandra.Store, string) {
	t.Helper()
	keyspace := testinfra.KeyspaceName(t)
	admin := testinfra.CassandraSession(t, e.infra.CassandraHosts, "")
	if err := admin.Query(fmt.Sprintf("CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %d}",
		keyspace, rf)).Exec(); err != nil {
		t.Fatalf("create keyspace: %v", err)
	}
	t.Cleanup(func() { _ = admin.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	user, password := testinfra.CassandraLogin(t)
	st, err := cassandra.Open(ctx, cassandra.Options{Hosts: e.infra.CassandraHosts, Keyspace: keyspace, Logger: e.log, Username: user, Password: password})
	if err != nil {
		t.Fatalf("open the Cassandra store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := admin.AwaitSchemaAgreement(ctx); err != nil {
		t.Fatalf("schema agreement: %v", err)
	}
	return st, keyspace
}

// cluster starts cfg's processes, kills them all at the end, and waits
// until every one is ready.
func (e *env) cluster(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	cfg.Bin, cfg.Log = e.bin, e.log
	if len(cfg.Brokers) == 0 {
		cfg.Brokers = e.infra.Brokers
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.DeviceSecret, cfg.ViewKey = deviceSecret, viewKey
	c, err := NewCluster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("log of %s: %s", n.Name(), n.LogPath())
			}
		}
	})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := c.WaitReady(ctx, 4*time.Minute); err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}
	return c
}

// envDuration reads a duration variable.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration like 90s or 5m", name, v)
	}
	return d
}

// envNumber reads a positive number variable.
func envNumber(t *testing.T, name string, def float64) float64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return f
}

// report adds the test's figures under its name to the EnvReport file.
func report(t *testing.T, figures any) {
	t.Helper()
	b, err := json.MarshalIndent(figures, "", "  ")
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	t.Logf("figures of %s:\n%s", t.Name(), b)
	path := os.Getenv(EnvReport)
	if path == "" {
		return
	}
	all := map[string]json.RawMessage{}
	if old, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(old, &all)
	}
	all[strings.ReplaceAll(t.Name(), "/", ".")] = b
	out, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatalf("report: %v", err)
	}
}
