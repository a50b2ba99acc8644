package topology_test

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/windowstore"
)

// timerEntries returns the timer entries the timers changelog keeps once
// compacted (its last value per key, tombstones removing theirs; not the
// stream-time entry): what a rebuild puts in the store.
func timerEntries(t *testing.T, k topology.Kafka, topic string) int {
	t.Helper()
	size := changelogSize(t, k, topic)
	ms, ok := readUntil(t, k, topic, 30*time.Second, func(ms []*sarama.ConsumerMessage) bool { return int64(len(ms)) >= size })
	if !ok {
		t.Fatalf("%s: read %d of %d records", topic, len(ms), size)
	}
	live := map[string]bool{}
	for _, m := range ms {
		c, err := windowstore.ParseChange(m.Key, m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if c.Start != -1 || len(c.Key) != 0 {
			live[string(m.Key)] = m.Value != nil
		}
	}
	n := 0
	for _, l := range live {
		if l {
			n++
		}
	}
	return n
}

// A fired timer's mark is deleted once its firing record committed (with
// the partition's next record), so the timers store does not grow with
// every key that ever fired: 20 keys fire, a marker record comes, and the
// changelog keeps the marker's pending timer alone; marks found committed
// by a rebuild (a takeover on a fresh folder) go likewise.
func TestFiredTimerMarksAreDeletedOnceCommitted(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	run := func() *running {
		topo, _, _, _ := stateTopo()
		return runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler),
			TickEvery: 100 * time.Millisecond})
	}
	topo, in, out, _ := stateTopo()
	fire := func(round string) {
		var kv, want []string
		for i := range 20 {
			key := round + strconv.Itoa(i)
			kv, want = append(kv, key, "0"), append(want, key+"=silent")
		}
		produce(t, k, in.Name(), kv...)
		waitCommitted(t, topo, k, "g")
		clock.advance(11 * time.Minute)
		outputs(t, k, out.Name(), want...)
		waitCommitted(t, topo, k, "g")
	}

	r1 := run()
	fire("a")
	produce(t, k, in.Name(), "m", "1") // arms m's timer; a0-a19 fired and committed
	waitCommitted(t, topo, k, "g")
	if n := timerEntries(t, k, "g-timers"); n != 1 {
		t.Errorf("after 20 timers fired and committed, the timers changelog keeps %d entries, want 1 (m's pending timer)", n)
	}
	fire("b") // m fires too
	r1.stop(t)

	r2 := run() // a fresh folder: the marks come from the changelog
	produce(t, k, in.Name(), "z", "2")
	waitCommitted(t, topo, k, "g")
	r2.stop(t)
	if n := timerEntries(t, k, "g-timers"); n != 1 {
		t.Errorf("after a takeover, the timers changelog keeps %d entries, want 1 (z's pending timer)", n)
	}
}
