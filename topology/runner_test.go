package topology_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/promhooks"
)

// counter is a small topology used across the runner tests: it counts
// numbers per key in a group table, emits running sums, and rejects,
// panics on, or transiently fails special values.
type counter struct {
	t         *topology.Topology
	in        topology.Stream[string]
	out       topology.Stream[string]
	table     topology.Table[int]
	transient atomic.Int32 // transient failures still to report
}

func newCounter(partitions int32) *counter {
	c := &counter{}
	c.t = topology.New("test")
	c.in = topology.NewStream(c.t, "numbers", codecs.String{}, topology.WithPartitions(partitions), topology.External("test producer"))
	c.out = topology.NewStream(c.t, "sums", codecs.String{}, topology.WithPartitions(partitions))
	p := c.t.Processor("count", topology.RetryBackoff(topology.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}))
	c.table = topology.Persist(p, codecs.JSON[int]{}, topology.WithPartitions(partitions))
	emit := topology.Produce(p, c.out)
	topology.Consume(p, c.in, func(ctx *topology.Context, key string, v string) error {
		switch v {
		case "panic":
			panic("boom")
		case "flaky":
			if c.transient.Add(-1) >= 0 {
				return topology.Transient(errors.New("database not answering"))
			}
			v = "1"
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return topology.Reject("not_a_number", err)
		}
		sum, _, err := c.table.Get(ctx)
		if err != nil {
			return err
		}
		sum += n
		if err := c.table.Set(ctx, sum); err != nil {
			return err
		}
		return emit.Emit(ctx, key, strconv.Itoa(sum))
	})
	return c
}

// build returns the plan of tp, failing the test when it does not build.
func build(t testing.TB, tp *topology.Topology) *topology.Plan {
	t.Helper()
	plan, err := tp.Build()
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func startBroker(t *testing.T) []string {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addrs()
}

func produce(t *testing.T, k topology.Kafka, topic string, kv ...string) {
	t.Helper()
	p, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(kv); i += 2 {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(kv[i]), Value: sarama.StringEncoder(kv[i+1])}); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads n records of topic from the start, or fails after timeout.
func readAll(t *testing.T, k topology.Kafka, topic string, n int, timeout time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	out, ok := readUntil(t, k, topic, timeout, func(got []*sarama.ConsumerMessage) bool { return len(got) >= n })
	if !ok {
		t.Fatalf("read %d of %d records from %s before the timeout", len(out), n, topic)
	}
	return out
}

// readUntil reads topic from the start until enough says so (true) or
// timeout passes (false), and returns what it read.
func readUntil(t *testing.T, k topology.Kafka, topic string, timeout time.Duration, enough func([]*sarama.ConsumerMessage) bool) ([]*sarama.ConsumerMessage, bool) {
	t.Helper()
	c, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *sarama.ConsumerMessage, 1024)
	for _, part := range parts {
		pc, err := c.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				msgs <- m
			}
		}()
	}
	var out []*sarama.ConsumerMessage
	deadline := time.After(timeout)
	for !enough(out) {
		select {
		case m := <-msgs:
			out = append(out, m)
		case <-deadline:
			return out, false
		}
	}
	return out, true
}

func TestRunnerOnEmbeddedBroker(t *testing.T) {
	brokers := startBroker(t)
	k := topology.Kafka{Brokers: brokers}
	c := newCounter(4)
	c.transient.Store(2)
	reg := prometheus.NewRegistry()
	m, err := promhooks.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := topology.NewRunner(build(t, c.t), topology.RunnerOptions{
		Kafka: k, DataDir: t.TempDir(), Hooks: []topology.Hook{m},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := promhooks.RegisterRunner(reg, r, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("runner stopped before it was ready: %v", err)
		default:
		}
		return r.Ready()
	})

	produce(t, k, c.in.Name(),
		"a", "1", "a", "2", "b", "10", "a", "x", "b", "panic", "a", "flaky", "b", "5")
	sums := readAll(t, k, c.out.Name(), 5, 30*time.Second)
	last := map[string]string{}
	for _, s := range sums {
		last[string(s.Key)] = string(s.Value)
	}
	if last["a"] != "4" || last["b"] != "15" {
		t.Errorf("final sums = %v, want a=4 b=15", last)
	}
	dead := readAll(t, k, c.t.DeadLetterTopic(), 2, 30*time.Second)
	reasons := map[string]records.Envelope{}
	for _, d := range dead {
		env, err := records.EnvelopeCodec{}.Decode(d.Value)
		if err != nil {
			t.Fatal(err)
		}
		reasons[env.Reason] = env
	}
	if env, ok := reasons["not_a_number"]; !ok || string(env.Value) != "x" || string(env.Key) != "a" || env.Stage != "count" || env.Topic != c.in.Name() {
		t.Errorf("not_a_number envelope = %+v", env)
	}
	if env, ok := reasons[topology.ReasonPanic]; !ok || string(env.Value) != "panic" || env.Attempts != 1 {
		t.Errorf("panic envelope = %+v", env)
	}

	// Every input is committed once its outputs are acknowledged.
	waitFor(t, 30*time.Second, func() error {
		lags, err := r.Lag(ctx)
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
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := counterValue(t, reg, "watershed_processor_retries_total"); got != 2 {
		t.Errorf("retries = %v, want 2", got)
	}
	if got := counterValue(t, reg, "watershed_processor_dead_letters_total"); got != 2 {
		t.Errorf("dead letters = %v, want 2", got)
	}
	if got := counterValue(t, reg, "watershed_processor_records_consumed_total"); got != 7 {
		t.Errorf("consumed = %v, want 7", got)
	}
}

// counterValue sums the series of a counter or gauge family, or the
// observations of a histogram family.
func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetHistogram().GetSampleSum()
		}
	}
	return sum
}

func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
