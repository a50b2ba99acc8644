package processors_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// Store modes of flakyStore.
const (
	storeUp = iota
	storeFailing
	storeDown
)

// flakyStore is a memStore whose writes fail as the store answering and
// failing (storeFailing) or as unavailable (storeDown); its ping answers
// unless down.
type flakyStore struct {
	*memStore
	mode   atomic.Int32
	writes atomic.Int64
}

func (s *flakyStore) Write(ctx context.Context, rs []records.Reading) error {
	s.writes.Add(1)
	switch s.mode.Load() {
	case storeFailing:
		return fmt.Errorf("server error: %w", sinks.ErrWriteFailed)
	case storeDown:
		return fmt.Errorf("no host: %w", sinks.ErrUnavailable)
	}
	return s.memStore.Write(ctx, rs)
}

func (s *flakyStore) Ping(context.Context) error {
	if s.mode.Load() == storeDown {
		return fmt.Errorf("no host: %w", sinks.ErrUnavailable)
	}
	return nil
}

// Records that moved to the retry topics drain once the store takes writes
// again, also when an outage hits them while they wait there.
func TestSinkRetryDrainsAfterOutage(t *testing.T) {
	store := &flakyStore{memStore: newMemStore()}
	k, p, r, ctx := runSink(t, store, processors.Config{Partitions: 2, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}, MaxAttempts: 100},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		processors.GroupSink, processors.GroupSink+"-retry")
	store.mode.Store(storeFailing)
	const packages = 40
	sendPackages(t, k, p, 1, packages)
	// Every record in the retry topics.
	waitUntil(t, func() error {
		lags, err := r.Lag(ctx)
		if err != nil {
			return err
		}
		var moved int64
		for _, l := range lags {
			if l.Topic != p.Normalized.Name() {
				moved += l.End
			}
			if l.Topic == p.Normalized.Name() && l.Lag != 0 {
				return fmt.Errorf("lag %+v", l)
			}
		}
		if moved < packages {
			return fmt.Errorf("%d records in the retry topics", moved)
		}
		return nil
	})
	store.mode.Store(storeDown)
	time.Sleep(500 * time.Millisecond)
	store.mode.Store(storeUp)
	drainedAndStored(t, ctx, k, p, r, store.memStore, packages)
}

// The same while a second replica joins and leaves the groups mid-retry.
func TestSinkRetryDrainsThroughRebalances(t *testing.T) {
	store := &flakyStore{memStore: newMemStore()}
	cfg := processors.Config{Partitions: 2, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{50 * time.Millisecond, 300 * time.Millisecond, time.Second}, MaxAttempts: 100},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	groups := []string{processors.GroupSink, processors.GroupSink + "-retry"}
	k, p, r, ctx := runSink(t, store, cfg, groups...)
	store.mode.Store(storeFailing)
	const packages = 40
	sendPackages(t, k, p, 1, packages)
	for i := range 2 {
		r2, err := topology.NewRunner(builtPlan(t, processors.New(cfg).Topology), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(),
			Groups: groups, Logger: slog.New(slog.DiscardHandler), Resources: []topology.Provided{topology.Provide[sinks.Store](processors.Store, store)}})
		if err != nil {
			t.Fatal(err)
		}
		ctx2, cancel2 := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r2.Run(ctx2) }()
		time.Sleep(700 * time.Millisecond)
		store.mode.Store(int32([]int{storeDown, storeFailing}[i]))
		time.Sleep(700 * time.Millisecond)
		cancel2()
		if err := stopped(t, done); err != nil {
			t.Logf("second runner: %v", err)
		}
	}
	store.mode.Store(storeUp)
	drainedAndStored(t, ctx, k, p, r, store.memStore, packages)
}

// The same when the companion's produce to the next retry topic is refused
// past the producer's retries.
func TestSinkRetryDrainsAfterRefusedRetryProduce(t *testing.T) {
	for _, tier := range []string{"-retry-1", "-retry-2"} {
		t.Run(tier, func(t *testing.T) { testSinkRetryRefusedProduce(t, processors.GroupSink+tier) })
	}
}

func testSinkRetryRefusedProduce(t *testing.T, topic string) {
	b := startBroker(t)
	k := topology.Kafka{Brokers: b.Addrs()}
	store := &flakyStore{memStore: newMemStore()}
	cfg := processors.Config{Partitions: 2, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}, MaxAttempts: 100},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	p, r, ctx := runSinkOn(t, b, store, cfg, processors.GroupSink, processors.GroupSink+"-retry")
	store.mode.Store(storeFailing)
	fault := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: 11})
	const packages = 40
	sendPackages(t, k, p, 1, packages)
	time.Sleep(2 * time.Second)
	t.Logf("%d produces refused", fault.Hits())
	fault.Remove()
	store.mode.Store(storeUp)
	drainedAndStored(t, ctx, k, p, r, store.memStore, packages)
}

// Many records wait in the retry topics of one partition, longer than the
// consumer's MaxProcessingTime, so that the companion's partition blocks its
// fetches; they drain once the store takes writes.
func TestSinkRetryDrainsManyWaiting(t *testing.T) {
	store := &flakyStore{memStore: newMemStore()}
	k, p, r, ctx := runSink(t, store, processors.Config{Partitions: 1, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, MaxAttempts: 100},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		processors.GroupSink, processors.GroupSink+"-retry")
	store.mode.Store(storeFailing)
	const packages = 800
	sendPackages(t, k, p, 1, packages)
	time.Sleep(6 * time.Second)
	store.mode.Store(storeDown)
	time.Sleep(3 * time.Second)
	store.mode.Store(storeFailing)
	time.Sleep(3 * time.Second)
	store.mode.Store(storeUp)
	drainedAndStored(t, ctx, k, p, r, store.memStore, packages)
}

// Attempts made in place during an outage are not the record's own: they
// do not count against its retries. A record that waited out a long outage
// in the sink and then fails once on its own goes on through the retry
// topics and is stored, instead of being dead-lettered as
// retries_exhausted.
func TestSinkOutageAttemptsDoNotExhaustRetries(t *testing.T) {
	store := &flakyStore{memStore: newMemStore()}
	const maxAttempts = 5
	k, p, r, ctx := runSink(t, store, processors.Config{Partitions: 1, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}, MaxAttempts: maxAttempts},
		SinkBackoff: topology.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}},
		processors.GroupSink, processors.GroupSink+"-retry")
	store.mode.Store(storeDown)
	sendPackages(t, k, p, 1, 1)
	waitUntil(t, func() error {
		if n := store.writes.Load(); n < 4*maxAttempts {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	store.mode.Store(storeFailing)
	// The record left the sink and failed in the companion once: it is in
	// the second retry topic, or (the bug) in the dead-letter topic.
	waitUntil(t, func() error {
		if len(deadLetters(t, ctx, k, p)) > 0 {
			return nil
		}
		return holds(ctx, r, processors.GroupSink+"-retry-2")
	})
	store.mode.Store(storeUp)
	drainedAndStored(t, ctx, k, p, r, store.memStore, 1)
}

// drainedAndStored waits until r's groups committed every record, then
// checks that the readings of devices 1..packages are stored and nothing
// went to the dead-letter topic.
func drainedAndStored(t *testing.T, ctx context.Context, k topology.Kafka, p *processors.Pipeline, r *topology.Runner, store *memStore, packages uint64) {
	t.Helper()
	waitCommitted(t, ctx, r)
	if dead := deadLetters(t, ctx, k, p); len(dead) != 0 {
		t.Errorf("%d dead letters, first: %s after %d attempts", len(dead), dead[0].Reason, dead[0].Attempts)
	}
	for d := uint64(1); d <= packages; d++ {
		if rows, _ := store.Readings(ctx, sinks.Query{DeviceID: d}); len(rows) != 2 {
			t.Errorf("device %d: %d rows stored, want 2", d, len(rows))
		}
	}
}

// holds returns nil once topic, an input of r's groups, holds a record.
func holds(ctx context.Context, r *topology.Runner, topic string) error {
	lags, err := r.Lag(ctx)
	if err != nil {
		return err
	}
	for _, l := range lags {
		if l.Topic == topic && l.End > 0 {
			return nil
		}
	}
	return fmt.Errorf("nothing in %s yet", topic)
}

// Two replicas of the sink and its retry group, records waiting in the
// retry topics: a rebalance that takes waiting records from one replica
// must not set off restarts that keep the group from ever processing them.
func TestSinkRetryTwoReplicasDrain(t *testing.T) {
	b := startBroker(t)
	k := topology.Kafka{Brokers: b.Addrs()}
	store := &flakyStore{memStore: newMemStore()}
	cfg := processors.Config{Partitions: 2, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second}, MaxAttempts: 100},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	groups := []string{processors.GroupSink, processors.GroupSink + "-retry"}
	p, r, ctx := runSinkOn(t, b, store, cfg, groups...)
	store.mode.Store(storeFailing)
	const packages = 40
	sendPackages(t, k, p, 1, packages)
	waitUntil(t, func() error { return holds(ctx, r, processors.GroupSink+"-retry-3") })
	runSinkOn(t, b, store, cfg, groups...)
	time.Sleep(4 * time.Second)
	store.mode.Store(storeUp)
	drainedAndStored(t, ctx, k, p, r, store.memStore, packages)
}
