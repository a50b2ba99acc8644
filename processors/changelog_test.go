package processors_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// tableFaults are the ways a table-topic write is refused in these tests:
// for good at once, which stops the runner (restarted on the same folder),
// and past the producer's retries with an error the runner recovers from
// by restarting the group in place.
var tableFaults = []struct {
	name  string
	err   *kerr.Error
	count int
}{
	{"refused", kerr.TopicAuthorizationFailed, 1},
	{"retries exhausted", kerr.NotLeaderForPartition, 11},
}

// The table topic refuses device-state's write of one record. The processor
// fails with the record uncommitted; after a restart on the same data
// folder the record is replayed. Whatever the local table held then, the
// table topic must end up holding the same, so that a replica that rebuilds
// the table from the topic counts the record too.
func TestDeviceStateReplayWritesTableTopic(t *testing.T) {
	for _, f := range tableFaults {
		t.Run(f.name, func(t *testing.T) { testDeviceStateReplay(t, f.err, f.count) })
	}
}

func testDeviceStateReplay(t *testing.T, fault *kerr.Error, count int) {
	b, k, p := startPipeline(t)
	dir, key := t.TempDir(), strconv.Itoa(device)

	run := startGroup(t, k, p, processors.GroupDeviceState, dir)
	send(t, k, p.Normalized, key, oneReading(1), oneReading(2))
	waitCommitted(t, context.Background(), run.r)

	refused := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: p.DeviceState.Name(), Err: fault, Count: count})
	send(t, k, p.Normalized, key, oneReading(3))
	run = replayAfterFailure(t, refused, count, run, func() *groupRun { return startGroup(t, k, p, processors.GroupDeviceState, dir) })
	run.stop(t)

	checkDeviceState(t, k, p, dir, key, 3)
}

// The table topic refuses dedupe's write of a bucket entry. The package's
// loop record is replayed after a restart on the same folder and would find
// its identities stored under its own raw offset (a replay, which re-emits
// and writes nothing). The table topic must still end up with the entry: a
// replica that takes the partition over and rebuilds from the topic must
// count a resend of the package's messages as duplicates.
func TestDedupeReplayWritesTableTopic(t *testing.T) {
	for _, f := range tableFaults {
		t.Run(f.name, func(t *testing.T) { testDedupeReplay(t, f.err, f.count) })
	}
}

func testDedupeReplay(t *testing.T, fault *kerr.Error, count int) {
	b, k, p := startPipeline(t)
	dir, key := t.TempDir(), strconv.Itoa(device)
	base := uint64(baseTime - baseTime%600_000)

	run := startGroup(t, k, p, processors.GroupDedupe, dir)
	// The first package puts the bucket in the device's index, so that
	// the next one writes only the bucket's entry.
	send(t, k, p.Decoded, key, batch(base, 1, 0, 0))
	waitCommitted(t, context.Background(), run.r)

	refused := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: p.Dedupe.Name(), Err: fault, Count: count})
	send(t, k, p.Decoded, key, batch(base, 2, 0, 0, 1000))
	run = replayAfterFailure(t, refused, count, run, func() *groupRun { return startGroup(t, k, p, processors.GroupDedupe, dir) })
	run.stop(t)
	sameTables(t, localTable(t, dir, processors.GroupDedupe, p.Dedupe.Name()), topicTable(t, k, p.Dedupe.Name()))

	// A replica on a new folder rebuilds from the topic and gets a resend
	// of both messages in another raw record: both are duplicates.
	replica := startGroup(t, k, p, processors.GroupDedupe, t.TempDir())
	send(t, k, p.Decoded, key, batch(base, 3, 0, 0, 1000))
	waitCommitted(t, context.Background(), replica.r)
	replica.stop(t)
	var resent []records.Readings
	for _, rs := range readTopic(t, k, p.Normalized.Name()) {
		v, err := p.Normalized.Codec().Decode(rs.value)
		if err != nil {
			t.Fatal(err)
		}
		if v.RawOffset == 3 {
			resent = append(resent, v)
		}
	}
	if len(resent) != 1 || len(resent[0].Items) != 0 || resent[0].Duplicates != 2 {
		t.Errorf("the resend came out as %+v, want one record of 2 duplicates and no readings", resent)
	}
}

// oneReading is the normalized record of package raw (its raw offset) of
// the device: one reading.
func oneReading(raw int64) records.Readings {
	return records.Readings{DeviceID: device, RawOffset: raw, Part: -1, Version: 2,
		Items: []records.Reading{{DeviceID: device, TimeMs: baseTime + uint64(raw), ContentCRC: uint32(raw)}}}
}

// checkDeviceState checks, with the device-state group stopped, that its
// local table (in dir) and its table topic hold the same, that the device
// (key) counts want messages in both, and in a replica rebuilt from the
// topic.
func checkDeviceState(t *testing.T, k topology.Kafka, p *processors.Pipeline, dir, key string, want uint64) {
	t.Helper()
	local := localTable(t, dir, processors.GroupDeviceState, p.DeviceState.Name())
	changelog := topicTable(t, k, p.DeviceState.Name())
	sameTables(t, local, changelog)
	for name, v := range map[string][]byte{"local table": local[key], "table topic": changelog[key]} {
		st, err := p.DeviceState.Codec().Decode(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Messages != want {
			t.Errorf("%s: messages = %d, want %d", name, st.Messages, want)
		}
	}

	// A replica rebuilt from the topic, such as the view API's.
	view, err := topology.NewView(p.DeviceState, topology.ViewOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	viewDone := make(chan error, 1)
	go func() { viewDone <- view.Run(ctx) }()
	defer func() {
		cancel()
		if err := stopped(t, viewDone); err != nil {
			t.Errorf("view: %v", err)
		}
	}()
	waitUntil(t, func() error {
		if !view.Recovered() {
			return fmt.Errorf("view not recovered")
		}
		return nil
	})
	st, ok, err := view.Get(key)
	if err != nil || !ok || st.Messages != want {
		t.Errorf("replica: messages = %d (found %v, %v), want %d", st.Messages, ok, err, want)
	}
}

// startPipeline starts a broker for a one-partition pipeline.
func startPipeline(t *testing.T) (*embedded.Broker, topology.Kafka, *processors.Pipeline) {
	t.Helper()
	return startPipelineWith(t, processors.Config{Partitions: 1, Now: func() time.Time { return received }})
}

// startPipelineWith starts a broker for the pipeline of cfg.
func startPipelineWith(t *testing.T, cfg processors.Config) (*embedded.Broker, topology.Kafka, *processors.Pipeline) {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, topology.Kafka{Brokers: b.Addrs()}, processors.New(cfg)
}

// groupRun is one group of a pipeline run by a Runner.
type groupRun struct {
	r      *topology.Runner
	cancel context.CancelFunc
	done   chan error
}

// startGroup runs group on the data folder dir and waits until it is ready.
func startGroup(t *testing.T, k topology.Kafka, p *processors.Pipeline, group, dir string) *groupRun {
	t.Helper()
	r, err := topology.NewRunner(builtPlan(t, p.Topology), topology.RunnerOptions{Kafka: k, DataDir: dir, Groups: []string{group},
		Logger: slog.New(slog.DiscardHandler), RestartBackoff: topology.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &groupRun{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- r.Run(ctx) }()
	t.Cleanup(cancel)
	waitUntil(t, r.Ready)
	return g
}

// stop stops the runner and checks that it stopped cleanly.
func (g *groupRun) stop(t *testing.T) {
	t.Helper()
	g.cancel()
	if err := stopped(t, g.done); err != nil {
		t.Errorf("run: %v", err)
	}
}

// replayAfterFailure waits until the table topic refused count requests,
// which makes the group fail, and the failed record was replayed: by the
// runner, which restarts the group in place (the record is then committed),
// or, when the failure ended the runner, by a new one that restart starts
// on the same folder. It returns the runner that replayed the record, with
// every record committed.
func replayAfterFailure(t *testing.T, refused *kfake.FaultHandle, count int, run *groupRun, restart func() *groupRun) *groupRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := refused.Wait(ctx, count); err != nil {
		t.Fatalf("the table write was not refused: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-run.done:
			if err == nil {
				t.Fatal("the runner stopped without an error after the refused write")
			}
			run = restart()
			waitCommitted(t, context.Background(), run.r)
			return run
		default:
		}
		if lagZero(run.r) {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatal("the refused record was neither replayed nor did the runner stop")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lagZero(r *topology.Runner) bool {
	lags, err := r.Lag(context.Background())
	if err != nil || len(lags) == 0 {
		return false
	}
	for _, l := range lags {
		if l.Lag != 0 {
			return false
		}
	}
	return r.Ready() == nil
}

func send[V any](t *testing.T, k topology.Kafka, s topology.Stream[V], key string, vs ...V) {
	t.Helper()
	prod, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for _, v := range vs {
		b, err := s.Codec().Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: s.Name(), Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// localTable reads a group's local table (one partition) from its folder.
func localTable(t *testing.T, dir, group, table string) map[string][]byte {
	t.Helper()
	st, err := tablestore.Open(filepath.Join(dir, "tables", group, table+".0"), tablestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	it, err := st.Iterator()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Release()
	out := map[string][]byte{}
	for it.Next() {
		v, err := it.Value()
		if err != nil {
			t.Fatal(err)
		}
		out[string(it.Key())] = bytes.Clone(v)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type topicRecord struct {
	key   string
	value []byte
}

// readTopic reads partition 0 of a topic from its start to its end.
func readTopic(t *testing.T, k topology.Kafka, topic string) []topicRecord {
	t.Helper()
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	end, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	var out []topicRecord
	if end == 0 {
		return out
	}
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, topicRecord{key: string(m.Key), value: m.Value})
			if m.Offset >= end-1 {
				return out
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: read %d records of %d", topic, len(out), end)
		}
	}
}

// topicTable is the table a replica rebuilds from a table topic: the last
// value of each key, without the deleted ones.
func topicTable(t *testing.T, k topology.Kafka, topic string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, r := range readTopic(t, k, topic) {
		if r.value == nil {
			delete(out, r.key)
			continue
		}
		out[r.key] = r.value
	}
	return out
}

func sameTables(t *testing.T, local, changelog map[string][]byte) {
	t.Helper()
	if len(local) == 0 {
		t.Error("the local table is empty")
	}
	for key, v := range local {
		if w, ok := changelog[key]; !ok || !bytes.Equal(v, w) {
			t.Errorf("key %q: the local table holds %x, the table topic %x (found %v)", key, v, w, ok)
		}
	}
	for key := range changelog {
		if _, ok := local[key]; !ok {
			t.Errorf("key %q: in the table topic, not in the local table", key)
		}
	}
}
