package topology_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
)

// A record waiting in a retry topic shows in the retry depth and age
// metrics, and a shutdown while it waits leaves it uncommitted.
func TestRetryTopicMetrics(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	tp := topology.New("rm")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"), topology.WithPartitions(2))
	out := topology.NewStream(tp, "out", codecs.String{}, topology.WithPartitions(2))
	p := tp.Processor("w", topology.RetryBackoff(topology.Backoff{Initial: time.Millisecond, Max: time.Millisecond}),
		topology.WithRetryTopics(topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{time.Hour}}))
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		if v == "slow" {
			return topology.Transient(errors.New("times out"))
		}
		return emit.Emit(c, key, v)
	})
	reg := prometheus.NewRegistry()
	r, err := topology.NewRunner(build(t, tp), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := promhooks.RegisterRunner(reg, r, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 60*time.Second, r.Ready)
	produce(t, k, in.Name(), "a", "ok", "a", "slow", "a", "after")
	readAll(t, k, out.Name(), 2, 30*time.Second)
	waitFor(t, 30*time.Second, func() error {
		depth, age := counterValue(t, reg, "watershed_retry_records"), counterValue(t, reg, "watershed_retry_oldest_age_seconds")
		if depth != 1 || age <= 0 {
			return errors.New("retry metrics not there yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown while a retry waits: %v", err)
	}
	lags, err := build(t, tp).Lag(context.Background(), k, []string{"w-retry"})
	if err != nil {
		t.Fatal(err)
	}
	var waiting int64
	for _, l := range lags {
		waiting += l.Lag
	}
	if waiting != 1 {
		t.Errorf("the waiting record was committed at shutdown: lag %d", waiting)
	}
}
