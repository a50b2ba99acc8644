package topology_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology"
)

// RunnerOptions.TickEvery spaces the ticks that fire due wall-clock
// timers: with a day between them, a due timer waits for a record of its
// partition, and no tick is sent (the default, a second, sends one within
// the three seconds looked at).
func TestTickEveryIsTheRunnersOption(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	topo, in, out, _ := stateTopo()
	r := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler),
		TickEvery: 24 * time.Hour})
	produce(t, k, in.Name(), "a", "0")
	waitCommitted(t, topo, k, "g")
	clock.advance(11 * time.Minute) // a's timer is due
	never := func([]*sarama.ConsumerMessage) bool { return false }
	if ticks, _ := readUntil(t, k, "g-ticks", 3*time.Second, never); len(ticks) != 0 {
		t.Fatalf("%d ticks sent with a day between ticks", len(ticks))
	}
	if got, _ := readUntil(t, k, out.Name(), time.Second, never); len(got) != 0 {
		t.Fatalf("outputs %d records before any record or tick came", len(got))
	}
	produce(t, k, in.Name(), "b", "1") // a record of the partition fires a's timer
	if got := outputs(t, k, out.Name(), "a=silent"); slices.Contains(got, "b=silent") {
		t.Errorf("outputs %v: b's timer is not due", got)
	}
	r.stop(t)
}
