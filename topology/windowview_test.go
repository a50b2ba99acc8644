package topology_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// A WindowView reads an aggregate's changelog as the group writes it (a
// group with an aggregate only writes the partition's stream time there,
// with its windows) and answers its windows.
func TestWindowViewReadsTheChangelog(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	topo := topology.New("wview")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(_ string, v string) (time.Time, bool) { m, err := strconv.Atoi(v); return at(m), err == nil })
	h := topology.Aggregate(topo.Processor("g"), in, topology.Tumbling(time.Hour).Grace(10*time.Minute),
		func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{})
	run := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	produce(t, k, in.Name(), "a", "0", "a", "5", "b", "75")
	waitCommitted(t, topo, k, "g")
	run.stop(t)
	v, err := topology.NewWindowView(h, topology.ViewOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	for !v.Recovered() {
		select {
		case err := <-done:
			t.Fatalf("the view stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the view did not recover")
		case <-time.After(20 * time.Millisecond):
		}
	}
	ws, err := v.Fetch("a", at(0), at(1))
	if err != nil || len(ws) != 1 || ws[0].Value != 2 || !ws[0].Closed {
		t.Errorf("a's window 10:00: %+v, %v", ws, err)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("the view: %v", err)
	}
}
