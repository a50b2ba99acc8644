//go:build integration

package demo_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/internal/demo"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/testinfra"
	"github.com/watershed-io/watershed/topology"
)

// TestIntegrationPipelineKafkaCassandra is the whole pipeline on a real
// Apache Kafka broker and a real Apache Cassandra node, driven by the
// simulator with every fault. What the simulator knows to be true must
// be what Cassandra holds (counted with CQL, partition by partition),
// what the view answers, and what the dead-letter topic holds (read back
// with kcat, a Kafka client that shares no code with the pipeline).
func TestIntegrationPipelineKafkaCassandra(t *testing.T) {
	brokers, hosts := testinfra.Kafka(t), testinfra.Cassandra(t)
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is needed to read the dead-letter topic back (`make tools` installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	keyspace := testinfra.CreateKeyspace(t, hosts)
	user, password := testinfra.CassandraLogin(t)
	store, err := cassandra.Open(ctx, cassandra.Options{Hosts: hosts, Keyspace: keyspace, Timeout: 20 * time.Second, Username: user, Password: password})
	if err != nil {
		t.Fatalf("open the Cassandra store: %v", err)
	}
	defer store.Close()

	prefix := testinfra.UniqueName(t, "w", 60) + "."
	kafka := &topology.Kafka{Brokers: brokers, ClientID: "watershed-it"}
	t.Cleanup(func() { deleteTopics(t, brokers, prefix) })

	var dlqTopic string
	var out bytes.Buffer
	report, err := demo.Run(ctx, demo.Options{
		Devices: 20, Rate: 40, Duration: 24 * time.Second, Faults: true, Seed: 11,
		// Message time runs 50 minutes over the run, so hourly windows
		// close and their summaries, stored in Cassandra, are compared.
		Silence: 8 * time.Second, MessageSpan: 50 * time.Minute,
		IngestAddr: "127.0.0.1:0", ViewAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		DeviceSecret: "s3cret", ViewKey: "test-key", Partitions: 4, Out: &out,
		DrainTimeout: 4 * time.Minute,
		Kafka:        kafka, Store: store, Prefix: prefix,
		Ready: func(d *demo.Demo) { dlqTopic = d.Pipeline.DeadLetters.Name() },
	})
	if err != nil {
		t.Fatalf("demo on Kafka and Cassandra: %v\n%s", err, out.String())
	}
	js, _ := json.MarshalIndent(report, "", "  ")
	t.Logf("report:\n%s", js)
	if !report.OK {
		t.Fatalf("the pipeline disagrees with the truth: %v", report.Mismatches)
	}
	if report.Truth.Messages == 0 || report.Truth.Duplicates == 0 || report.Truth.Invalid == 0 || report.Truth.PackagesRejected == 0 {
		t.Fatalf("the run did not exercise every outcome: %+v", report.Truth)
	}
	if tr := report.Time; tr == nil || tr.Certain == 0 || tr.Matched != tr.Certain || tr.Stored < tr.Matched {
		t.Errorf("hourly summaries in Cassandra not compared or not matched: %+v", tr)
	}
	hi := report.Truth
	if report.TruthMax != nil {
		hi = *report.TruthMax
	}
	within := func(n, lo, hi int) bool { return n >= lo && n <= max(lo, hi) }

	// The view, as the view API serves it, against the truth.
	if v := report.View; !within(v.Messages, report.Truth.Messages, hi.Messages) ||
		!within(v.Duplicates, report.Truth.Duplicates, hi.Duplicates) ||
		!within(v.Invalid, report.Truth.Invalid, hi.Invalid) ||
		!within(v.PackagesRejected, report.Truth.PackagesRejected, hi.PackagesRejected) {
		t.Errorf("view totals %+v, truth %+v..%+v", v, report.Truth, hi)
	}

	// Cassandra, counted with CQL per device-day partition, against the
	// store's reads per device and the truth.
	perDevice := countRows(t, ctx, hosts, keyspace)
	total := 0
	for dev, n := range perDevice {
		total += n
		rows, err := store.Readings(ctx, sinks.Query{DeviceID: dev})
		if err != nil {
			t.Fatalf("Readings of device %d: %v", dev, err)
		}
		if len(rows) != n {
			t.Errorf("device %d: CQL counts %d rows, the store reads %d", dev, n, len(rows))
		}
	}
	if len(perDevice) == 0 || len(perDevice) > 20 {
		t.Errorf("rows of %d devices, want 1 to 20", len(perDevice))
	}
	if !within(total, report.Truth.Messages, hi.Messages) || total != report.Sink.Messages {
		t.Errorf("Cassandra holds %d rows (CQL COUNT), truth %d..%d, reconciled %d", total, report.Truth.Messages, hi.Messages, report.Sink.Messages)
	}
	t.Logf("Cassandra: %d rows of %d devices", total, len(perDevice))

	// The dead-letter topic, read with kcat.
	byReason := kcatReasons(t, ctx, brokers[0], dlqTopic)
	dead := 0
	for reason, n := range byReason {
		dead += n
		if n != report.DeadLettersByReason[reason] {
			t.Errorf("dead letters %q: kcat reads %d, the pipeline's consumer %d", reason, n, report.DeadLettersByReason[reason])
		}
		if lo := report.TruthDeadLettersByReason[reason]; report.Exact && n != lo || n < lo {
			t.Errorf("dead letters %q: kcat reads %d, truth %d (exact: %v)", reason, n, lo, report.Exact)
		}
	}
	for reason, lo := range report.TruthDeadLettersByReason {
		if lo > 0 && byReason[reason] == 0 {
			t.Errorf("dead letters %q: kcat reads none, truth %d", reason, lo)
		}
	}
	if !within(dead, report.Truth.DeadLetters, hi.DeadLetters) {
		t.Errorf("kcat reads %d dead letters, truth %d..%d", dead, report.Truth.DeadLetters, hi.DeadLetters)
	}
	t.Logf("dead-letter topic %s (kcat): %v", dlqTopic, byReason)
}

// countRows counts the rows of every device with CQL: the device-day
// partitions listed in devices_days, one SELECT COUNT(*) each.
func countRows(t *testing.T, ctx context.Context, hosts []string, keyspace string) map[uint64]int {
	t.Helper()
	s := testinfra.CassandraSession(t, hosts, keyspace)
	iter := s.Query("SELECT device_id, day FROM devices_days").IterContext(ctx)
	type part struct{ dev, day int64 }
	var parts []part
	var p part
	for iter.Scan(&p.dev, &p.day) {
		parts = append(parts, p)
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("list device-day partitions: %v", err)
	}
	out := map[uint64]int{}
	for _, p := range parts {
		var n int
		if err := s.Query("SELECT COUNT(*) FROM readings WHERE device_id = ? AND day = ?", p.dev, p.day).ScanContext(ctx, &n); err != nil {
			t.Fatalf("count partition (%d, %d): %v", p.dev, p.day, err)
		}
		out[cassandra.DeviceID(p.dev)] += n
	}
	return out
}

// kcatReasons reads the whole topic with kcat and counts its envelopes by
// reason. kcat writes each payload after its length (%R: a signed 32-bit
// big-endian integer), so binary payloads need no escaping.
func kcatReasons(t *testing.T, ctx context.Context, broker, topic string) map[string]int {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "kcat", "-b", broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%R%s")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, stderr.String())
	}
	b := stdout.Bytes()
	out := map[string]int{}
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("kcat output: %d stray bytes", len(b))
		}
		n := int64(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if n < 0 || n > int64(len(b)) {
			t.Fatalf("kcat output: record length %d with %d bytes left", n, len(b))
		}
		e, err := records.EnvelopeCodec{}.Decode(b[:n])
		if err != nil {
			t.Fatalf("dead letter does not decode: %v", err)
		}
		out[e.Reason]++
		b = b[n:]
	}
	return out
}

// deleteTopics deletes the topics of the run.
func deleteTopics(t *testing.T, brokers []string, prefix string) {
	admin, err := sarama.NewClusterAdmin(brokers, testinfra.SaramaConfig())
	if err != nil {
		t.Logf("cluster admin: %v", err)
		return
	}
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		t.Logf("list topics: %v", err)
		return
	}
	for name := range topics {
		if strings.HasPrefix(name, prefix) {
			if err := admin.DeleteTopic(name); err != nil {
				t.Logf("delete topic %s: %v", name, err)
			}
		}
	}
}
