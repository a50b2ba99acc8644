package topology_test

import (
	"fmt"
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

// A fired timer's mark is deleted once its firing record settled (with
// the partition's next record, or a tick), so the timers store does not
// grow with every key that ever fired: 20 keys fire, a marker record
// comes, and the changelog keeps the marker's pending timer alone; 20 more
// and the marker fire, and with no record after them the ticks delete
// their marks; marks found committed by a rebuild (a takeover on a fresh
// folder, the second run) go likewise.
func TestFiredTimerMarksAreDeletedOnceCommitted(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	run := func(tick time.Duration) *running {
		topo, _, _, _ := stateTopo()
		return runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler),
			TickEvery: tick})
	}
	topo, in, out, _ := stateTopo()
	// arm schedules 20 keys' timers; fire makes them due and waits for
	// their firings, by a tick or by the record of key by.
	arm := func(round string) (want []string) {
		var kv []string
		for i := range 20 {
			key := round + strconv.Itoa(i)
			kv, want = append(kv, key, "0"), append(want, key+"=silent")
		}
		produce(t, k, in.Name(), kv...)
		waitCommitted(t, topo, k, "g")
		return want
	}
	fire := func(want []string, by string) {
		clock.advance(11 * time.Minute)
		if by != "" {
			produce(t, k, in.Name(), by, "1")
		}
		outputs(t, k, out.Name(), want...)
		waitCommitted(t, topo, k, "g")
	}
	entries := func(want int, after string) {
		t.Helper()
		if n := timerEntries(t, k, "g-timers"); n != want {
			t.Errorf("%s, the timers changelog keeps %d entries, want %d", after, n, want)
		}
	}

	r1 := run(100 * time.Millisecond)
	fire(arm("a"), "")
	produce(t, k, in.Name(), "m", "1") // arms m's timer; a0-a19 fired and committed
	waitCommitted(t, topo, k, "g")
	entries(1, "after 20 timers fired and a later record") // m's pending timer
	fire(arm("b"), "")                                     // m fires too
	// No record comes: the ticks the marks call for delete them.
	waitFor(t, 30*time.Second, func() error {
		if n := timerEntries(t, k, "g-timers"); n != 0 {
			return fmt.Errorf("a quiet partition's timers changelog keeps %d entries, want 0", n)
		}
		return nil
	})
	r1.stop(t)

	// No ticks: the record n fires c0-c19, and the group stops before
	// another record comes.
	r2 := run(24 * time.Hour)
	fire(arm("c"), "n")
	r2.stop(t)
	entries(21, "with the marks of c0-c19 not deleted yet") // and n's pending timer
	r3 := run(24 * time.Hour)                               // a fresh folder: the marks come from the changelog
	produce(t, k, in.Name(), "z", "2")
	waitCommitted(t, topo, k, "g")
	r3.stop(t)
	entries(2, "after a takeover and a record") // n's and z's pending timers
}
