package topology_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// A window's aggregate that outgrows a Kafka record is not refused
// (as an Emit is): the changelog write fails and Run ends.
func TestOversizedWindowDeadLettered(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	topo := topology.New("big")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(string, string) (time.Time, bool) { return at(0), true })
	p := topo.Processor("g")
	topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() string { return "" },
		func(_, v, acc string) string { return acc + v }, codecs.String{})
	plan, err := topo.Build()
	if err != nil {
		t.Fatal(err)
	}
	r, err := topology.NewRunner(plan, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	big := strings.Repeat("x", 400_000)
	for i := range 6 {
		produce(t, k, in.Name(), "a", big+strconv.Itoa(i))
	}
	// The window stays within a Kafka record: the records that would
	// outgrow it are dead-lettered too_large, and Run goes on.
	for {
		n := 0
		for _, e := range deadLetters(t, k, topo.DeadLetterTopic()) {
			if e.Reason == topology.ReasonTooLarge {
				n++
			}
		}
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no too_large dead letter")
		case <-time.After(200 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		t.Errorf("Run ended: %v", err)
	default:
	}
}
