package topology_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// restoreLog counts the changelog records that session starts read
// (the runner's "state restored" lines).
type restoreLog struct {
	mu   sync.Mutex
	read int64
}

func (l *restoreLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *restoreLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *restoreLog) WithGroup(string) slog.Handler            { return l }
func (l *restoreLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "state restored" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "records" {
			l.mu.Lock()
			l.read += a.Value.Int64()
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

// take returns the records counted since the last take.
func (l *restoreLog) take() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.read
	l.read = 0
	return n
}

// changelogSize returns the records the topics hold (their end offsets).
func changelogSize(t *testing.T, k topology.Kafka, topics ...string) int64 {
	t.Helper()
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var n int64
	for _, topic := range topics {
		parts, err := client.Partitions(topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				t.Fatal(err)
			}
			n += end
		}
	}
	return n
}

// A restart on the same folder reads only what the changelogs got since
// the last session started (its checkpoint), and finds the windows, the
// timers and the stream time as they were; a takeover on a fresh folder
// reads them whole. Each timer fires once and each window closes once
// across all of it.
func TestRestartOnSameFolderReadsOnlyTheChangelogsTail(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	logs := &restoreLog{}
	dir := t.TempDir()
	run := func(dir string) *running {
		topo, _, _, _ := stateTopo()
		return runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: dir, Clock: clock, Logger: slog.New(logs)})
	}
	topo, in, out, windows := stateTopo()
	size := func() int64 { return changelogSize(t, k, windows.Name(), "g-timers") }

	r1 := run(dir)
	produce(t, k, in.Name(), "a", "0", "a", "20", "b", "30")
	waitCommitted(t, topo, k, "g")
	r1.stop(t)
	logs.take()
	e1 := size()

	r2 := run(dir) // the checkpoint of r1's start: offset 0
	clock.advance(11 * time.Minute)
	outputs(t, k, out.Name(), "b=silent")
	produce(t, k, in.Name(), "c", "80") // stream time 11:20 closes 10:00-11:00
	outputs(t, k, out.Name(), "b=closed:1")
	waitCommitted(t, topo, k, "g")
	r2.stop(t)
	if n := logs.take(); n != e1 {
		t.Errorf("the second session read %d records, want the first one's %d", n, e1)
	}
	e2 := size()

	r3 := run(dir)                       // reads what r2 wrote only
	produce(t, k, in.Name(), "y", "-60") // 09:00, late: stream time (11:00) came back from the checkpoint
	produce(t, k, in.Name(), "d", "85")
	waitCommitted(t, topo, k, "g")
	clock.advance(time.Hour)
	outputs(t, k, out.Name(), "d=silent")
	produce(t, k, in.Name(), "e", "150") // closes 11:00-12:00
	got := outputs(t, k, out.Name(), "d=closed:1")
	waitCommitted(t, topo, k, "g")
	r3.stop(t)
	if n := logs.take(); n != e2-e1 || n == 0 {
		t.Errorf("the third session read %d records, want the second one's %d (of %d)", n, e2-e1, e2)
	}
	e3 := size()

	restartOutputsOnce(t, got)

	r4 := run(t.TempDir()) // a takeover on a fresh folder reads everything
	produce(t, k, in.Name(), "x", "5")
	waitCommitted(t, topo, k, "g")
	r4.stop(t)
	if n := logs.take(); n != e3 {
		t.Errorf("a fresh folder's session read %d records, want all %d", n, e3)
	}
	dl := deadLetters(t, k, topo.DeadLetterTopic())
	if len(dl) != 2 || string(dl[0].Key) != "y" || string(dl[1].Key) != "x" || dl[0].Reason != topology.ReasonLate || dl[1].Reason != topology.ReasonLate {
		t.Errorf("dead letters %+v, want y's and x's records, late", dl)
	}
}

// The state changelogs are created keeping tombstones a day, said
// explicitly; a checkpoint is used only while it is younger than what the
// changelog's delete.retention.ms, read from the brokers at the session's
// start, allows: a topic set to keep tombstones five minutes (less than
// the rebuild may take) has its stores rebuilt from the oldest record
// whatever the checkpoint's age, since a tombstone of the tail may
// already be compacted away.
func TestCheckpointFollowsTheChangelogsDeleteRetention(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	logs := &restoreLog{}
	dir := t.TempDir()
	run := func() *running {
		topo, _, _, _ := stateTopo()
		return runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: dir, Clock: clock, Logger: slog.New(logs)})
	}
	topo, in, _, windows := stateTopo()
	changelogs := []string{windows.Name(), "g-timers"}

	r1 := run()
	produce(t, k, in.Name(), "a", "0", "b", "30")
	waitCommitted(t, topo, k, "g")
	r1.stop(t)
	r2 := run() // its start checkpoints the changelogs' ends
	produce(t, k, in.Name(), "c", "40")
	waitCommitted(t, topo, k, "g")
	r2.stop(t)
	logs.take()
	all := changelogSize(t, k, changelogs...)

	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	five := strconv.FormatInt((5 * time.Minute).Milliseconds(), 10)
	for _, topic := range changelogs {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"delete.retention.ms"}})
		if err != nil || len(entries) != 1 || entries[0].Value != "86400000" || entries[0].Default {
			t.Errorf("%s created with delete.retention.ms %+v (%v), want 86400000 set on the topic", topic, entries, err)
		}
		if err := admin.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
			"delete.retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &five},
		}, false); err != nil {
			t.Fatal(err)
		}
	}
	r3 := run()
	waitCommitted(t, topo, k, "g")
	r3.stop(t)
	if n := logs.take(); n != all {
		t.Errorf("with tombstones kept 5 minutes, a restart on the same folder read %d changelog records, want all %d", n, all)
	}
}
