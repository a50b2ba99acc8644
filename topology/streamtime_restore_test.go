package topology_test

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/watershed-io/watershed/topology"
)

// After a takeover stream time must be what it was at the commit, not lower
// than before: a record late before the restart must not open a window of its
// key after it (it is dead-lettered late, as before).
func TestLateBeforeTakeoverLateAfter(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	run := func() *running {
		topo, _, _, _ := stateTopo()
		return runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	}
	topo, in, out, _ := stateTopo()
	r1 := run()
	produce(t, k, in.Name(), "a", "0", "b", "75") // stream time 11:15 closes 10:00-11:00
	outputs(t, k, out.Name(), "a=closed:1")
	waitCommitted(t, topo, k, "g")
	r1.stop(t)
	r2 := run()                                     // fresh folder: stream time 11:00 (b's window start)
	produce(t, k, in.Name(), "x", "30", "y", "135") // x 10:30 was late at 11:15
	got := outputs(t, k, out.Name(), "b=closed:1")
	waitCommitted(t, topo, k, "g")
	r2.stop(t)
	if slices.Contains(got, "x=closed:1") {
		t.Errorf("x's late record opened and closed a window after the restart: %v", got)
	}
	if dl := deadLetters(t, k, topo.DeadLetterTopic()); len(dl) != 1 {
		t.Errorf("dead letters %+v, want x's, late", dl)
	}
}
