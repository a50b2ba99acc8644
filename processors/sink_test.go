package processors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// refusingStore is a memStore that counts its writes and refuses for good
// every write holding a reading of one device (none when 0).
type refusingStore struct {
	*memStore
	device uint64
	writes int
}

func (s *refusingStore) Write(ctx context.Context, rs []records.Reading) error {
	s.mu.Lock()
	for _, r := range rs {
		if r.DeviceID == s.device {
			s.mu.Unlock()
			return errors.New("row rejected by the schema")
		}
	}
	s.writes++
	s.mu.Unlock()
	return s.memStore.Write(ctx, rs)
}

// On a real broker the sink merges the records of a partition into few
// writes; a record the store refuses goes to the dead-letter topic with
// reason sink_refused while the rows of its batch's other records are
// stored.
func TestSinkBatchesAndDeadLettersRefusedRecords(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	store := &refusingStore{memStore: newMemStore()}
	p := processors.New(processors.Config{Partitions: 1, Sink: store,
		SinkBatch: topology.BatchOptions{MaxWait: time.Second}})
	r, err := topology.NewRunner(p.Topology, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(),
		Groups: []string{processors.GroupSink}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitUntil(t, r.Ready)

	// Twenty packages of devices 1..20 (two readings each), sent at once,
	// take few writes.
	sendPackages(t, k, p, 1, 20)
	waitCommitted(t, ctx, r)
	store.mu.Lock()
	writes := store.writes
	store.mu.Unlock()
	if writes >= 10 {
		t.Errorf("%d writes for 20 records: not batched", writes)
	}
	// Device 33 is refused in a batch with its neighbours 31..36.
	store.mu.Lock()
	store.device = 33
	store.mu.Unlock()
	sendPackages(t, k, p, 31, 36)
	waitCommitted(t, ctx, r)
	for _, d := range []uint64{1, 20, 31, 32, 33, 34, 35, 36} {
		rows, _ := store.Readings(ctx, sinks.Query{DeviceID: d})
		if want := 2 * btoi(d != 33); len(rows) != want {
			t.Errorf("device %d: %d rows stored, want %d", d, len(rows), want)
		}
	}
	// The envelope was acknowledged before its record committed.
	q, err := dlq.Open(k, p.Topology.DeadLetterTopic(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var dead []records.Envelope
	if _, err := q.Scan(ctx, dlq.Filter{}, func(r dlq.Record) error {
		dead = append(dead, r.Envelope)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Reason != "sink_refused" || dead[0].Stage != processors.GroupSink || string(dead[0].Key) != "33" {
		t.Errorf("dead letters = %+v", dead)
	}
}

// sendPackages sends one package of two readings for each device from..to
// at once.
func sendPackages(t *testing.T, k topology.Kafka, p *processors.Pipeline, from, to uint64) {
	t.Helper()
	prod, err := sarama.NewAsyncProducer(k.Brokers, k.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for d := from; d <= to; d++ {
		rs := records.Readings{DeviceID: d, Items: []records.Reading{
			{DeviceID: d, TimeMs: baseTime, ContentCRC: 1}, {DeviceID: d, TimeMs: baseTime + 1, ContentCRC: 2}}}
		v, err := p.Normalized.Codec().Encode(rs)
		if err != nil {
			t.Fatal(err)
		}
		prod.Input() <- &sarama.ProducerMessage{Topic: p.Normalized.Name(), Key: sarama.StringEncoder(strconv.FormatUint(d, 10)), Value: sarama.ByteEncoder(v)}
	}
	for d := from; d <= to; d++ {
		select {
		case <-prod.Successes():
		case err := <-prod.Errors():
			t.Fatal(err)
		}
	}
}

// waitCommitted waits until the runner's groups committed every record.
func waitCommitted(t *testing.T, ctx context.Context, r *topology.Runner) {
	t.Helper()
	waitNoLag(t, func() ([]topology.PartitionLag, error) { return r.Lag(ctx) })
}

// waitNoLag waits until every lag lags reads is zero.
func waitNoLag(t *testing.T, lags func() ([]topology.PartitionLag, error)) {
	t.Helper()
	waitUntil(t, func() error {
		lags, err := lags()
		if err != nil {
			return err
		}
		for _, l := range lags {
			if l.Lag != 0 {
				return fmt.Errorf("lag %+v", l)
			}
		}
		return nil
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func waitUntil(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
