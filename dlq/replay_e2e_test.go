package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// The replay cases of the dead-letter issue, on the real framework and the
// embedded broker: a record fails for good and is dead-lettered; replayed
// while the cause persists it fails again and comes back with its attempts
// raised (and is replayed only once); replayed after the cause is fixed it
// is processed.
func TestReplayAfterFixAndReplayThatFailsAgain(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := topology.Kafka{Brokers: b.Addrs()}

	var broken atomic.Bool
	broken.Store(true)
	tp := topology.New("rp")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"), topology.WithPartitions(2))
	out := topology.NewStream(tp, "out", codecs.String{}, topology.WithPartitions(2))
	p := tp.Processor("work")
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		if v == "needs-fix" && broken.Load() {
			return topology.Reject("lookup_missing", errors.New("no reference data for "+v))
		}
		return emit.Emit(c, key, v)
	})
	plan, err := tp.Build()
	if err != nil {
		t.Fatal(err)
	}
	r, err := topology.NewRunner(plan, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	}()
	waitReady(t, r)

	prod, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: in.Name(), Key: sarama.StringEncoder("dev1"), Value: sarama.StringEncoder("needs-fix")}); err != nil {
		t.Fatal(err)
	}

	q, err := dlq.Open(k, tp.DeadLetterTopic(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	envelopes := func(n int) []records.Envelope {
		t.Helper()
		var got []records.Envelope
		deadline := time.Now().Add(30 * time.Second)
		for {
			got = got[:0]
			if _, err := q.Scan(context.Background(), dlq.Filter{}, func(r dlq.Record) error {
				got = append(got, r.Envelope)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) >= n || time.Now().After(deadline) {
				return got
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := envelopes(1)
	if len(first) != 1 || first[0].Reason != "lookup_missing" || first[0].Attempts != 1 {
		t.Fatalf("first dead letter: %+v", first)
	}

	// Replayed while still broken: it fails again, attempts raised.
	rep, err := q.Replay(context.Background(), dlq.Filter{}, dlq.ReplayOptions{})
	if err != nil || rep.Count(dlq.ActionReplayed) != 1 {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	again := envelopes(2)
	if len(again) != 2 || again[1].Attempts != 2 || !again[1].FirstFailure.Equal(first[0].FirstFailure.Truncate(time.Millisecond)) {
		t.Fatalf("after a failing replay: %+v", again)
	}
	// The first dead letter is replayed once only; the new one is new.
	rep, err = q.Replay(context.Background(), dlq.Filter{}, dlq.ReplayOptions{DryRun: true})
	if err != nil || rep.Count(dlq.ActionAlreadyReplayed) != 1 || rep.Count(dlq.ActionWouldReplay) != 1 {
		t.Fatalf("second dry run: %+v, %v", rep, err)
	}

	// Fixed: replaying the new dead letter succeeds.
	broken.Store(false)
	rep, err = q.Replay(context.Background(), dlq.Filter{}, dlq.ReplayOptions{})
	if err != nil || rep.Count(dlq.ActionReplayed) != 1 {
		t.Fatalf("replay after the fix: %+v, %v", rep, err)
	}
	c, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	found := false
	for part := int32(0); part < 2 && !found; part++ {
		pc, err := c.ConsumePartition(out.Name(), part, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-pc.Messages():
			found = string(m.Value) == "needs-fix" && string(m.Key) == "dev1"
		case <-time.After(5 * time.Second):
		}
		pc.Close()
	}
	if !found {
		t.Fatal("the replayed record was not processed after the fix")
	}
	// The record produced its output, so it was not dead-lettered too.
	if n := len(envelopes(0)); n != 2 {
		t.Errorf("%d dead letters after the fix, want still 2", n)
	}
}

func waitReady(t *testing.T, r *topology.Runner) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for r.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("runner not ready: %w", r.Ready()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
