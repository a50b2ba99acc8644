package topology_test

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
)

// manualClock is a wall clock a test moves.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// stateTopo counts records per key in hourly windows (10 minutes' grace)
// of the minute their value names, emitting "closed:<n>" on close, and
// arms a wall-clock timer 10 minutes after each record, emitting "silent".
func stateTopo() (*topology.Topology, topology.Stream[string], topology.Stream[string], topology.Windowed[int]) {
	return stateTopoOf(1)
}

func stateTopoOf(partitions int32) (*topology.Topology, topology.Stream[string], topology.Stream[string], topology.Windowed[int]) {
	topo := topology.New("timestate")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(partitions), topology.External("test")).
		TimedBy(func(_ string, v string) (time.Time, bool) {
			m, _ := strconv.Atoi(v)
			return at(m), true
		})
	out := topology.NewStream(topo, "out", codecs.String{}, topology.WithPartitions(partitions))
	p := topo.Processor("g")
	emit := topology.Produce(p, out)
	silent := topology.Timer(p, "silent", codecs.String{}, func(c *topology.Context, key string, _ string) error {
		return emit.Emit(c, key, "silent")
	})
	h := topology.Aggregate(p, in, topology.Tumbling(time.Hour).Grace(10*time.Minute),
		func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{},
		topology.OnUpdate(func(c *topology.Context, key string, _ topology.Window, _ int) error {
			return silent.AtWallTime(c, key, c.Now().Add(10*time.Minute), "")
		}),
		topology.OnClose(func(c *topology.Context, key string, _ topology.Window, n int) error {
			return emit.Emit(c, key, "closed:"+strconv.Itoa(n))
		}))
	return topo, in, out, h
}

// outputs reads topic from the start until it holds the records
// key=value of want, and returns all it read as key=value.
func outputs(t *testing.T, k topology.Kafka, topic string, want ...string) []string {
	t.Helper()
	var got []string
	read, ok := readUntil(t, k, topic, 60*time.Second, func(ms []*sarama.ConsumerMessage) bool {
		got = got[:0]
		for _, m := range ms {
			got = append(got, string(m.Key)+"="+string(m.Value))
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("%s: not all of %v in %d records: %v", topic, want, len(read), got)
	}
	return got
}

// Windows and timers are the framework's changelogged state: a group
// restarted on a fresh folder (a replica taking over) rebuilds them from
// their changelogs, the restored windows close with the counts of before
// the restart, and each timer fires exactly once across restarts.
func TestWindowsAndTimersSurviveRestartOnFreshFolder(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	run := func() *running {
		topo, _, _, _ := stateTopo()
		return runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	}
	topo, in, out, windows := stateTopo()

	r1 := run()
	produce(t, k, in.Name(), "a", "0", "a", "20", "b", "30")
	waitCommitted(t, topo, k, "g")
	r1.stop(t)

	r2 := run() // a fresh folder: everything comes from the changelogs
	clock.advance(11 * time.Minute)
	got := outputs(t, k, out.Name(), "b=silent")
	produce(t, k, in.Name(), "c", "80") // stream time 11:20 closes 10:00-11:00
	got = outputs(t, k, out.Name(), "b=closed:1")
	waitCommitted(t, topo, k, "g")
	r2.stop(t)

	r3 := run()
	produce(t, k, in.Name(), "d", "85")
	waitCommitted(t, topo, k, "g")
	clock.advance(time.Hour)
	outputs(t, k, out.Name(), "d=silent")
	produce(t, k, in.Name(), "e", "150") // closes 11:00-12:00
	got = outputs(t, k, out.Name(), "d=closed:1")
	waitCommitted(t, topo, k, "g")
	r3.stop(t)

	restartOutputsOnce(t, got)

	// The rebuild raises stream time to the latest window start (12:00):
	// a record late before the restart (10:05, whose window closed at
	// 11:10) is late after it.
	r4 := run()
	produce(t, k, in.Name(), "x", "5")
	waitCommitted(t, topo, k, "g")
	r4.stop(t)
	if dl := deadLetters(t, k, topo.DeadLetterTopic()); len(dl) != 1 || dl[0].Reason != topology.ReasonLate || string(dl[0].Key) != "x" {
		t.Errorf("dead letters %+v, want x's record, late", dl)
	}

	// Another process reads the windows from their changelog.
	view, stop := runWindowView(t, k, windows)
	waitFor(t, 30*time.Second, func() error {
		if !view.Recovered() {
			return errors.New("view not recovered")
		}
		return nil
	})
	ws, err := view.Fetch("a", at(0), at(180))
	if err != nil || len(ws) != 1 || ws[0].Value != 2 || !ws[0].Closed || !ws[0].Start.Equal(at(0)) || !ws[0].End.Equal(at(60)) {
		t.Errorf("view of a: %+v, %v; want 10:00-11:00 closed with 2", ws, err)
	}
	if ws, err := view.Fetch("e", at(0), at(180)); err != nil || len(ws) != 1 || ws[0].Value != 1 || ws[0].Closed {
		t.Errorf("view of e: %+v, %v; want 12:00 open with 1", ws, err)
	}
	stop()
}

// A firing whose output the broker refuses leaves its record uncommitted,
// though the timer's state write was acknowledged: the restarted group
// finds the timer fired by an uncommitted record, schedules it again, and
// fires it once more. The alert is written once, not lost.
func TestTimerFiringThatFailsBeforeCommitFiresAgain(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	clock := &manualClock{now: t0}
	topo, in, out, _ := stateTopo()
	run := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}})
	produce(t, k, in.Name(), "a", "0")
	waitCommitted(t, topo, k, "g")

	fault := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out.Name(), Err: kerr.TopicAuthorizationFailed, Count: 1})
	clock.advance(11 * time.Minute)
	waitRefused(t, fault)
	got := outputs(t, k, out.Name(), "a=silent")
	produce(t, k, in.Name(), "b", "1") // a marker: handled after any further firing of a's
	waitCommitted(t, topo, k, "g")
	got = outputs(t, k, out.Name(), "a=silent")
	run.stop(t)
	if n := slices.Index(got, "a=silent"); n < 0 || slices.Contains(got[n+1:], "a=silent") {
		t.Errorf("outputs %v, want a=silent once", got)
	}
}

// A replica that takes the partitions over while the first one runs, then
// alone, fires every timer once and closes every window once, with the
// counts the first one made.
func TestReplicaTakesWindowsAndTimersOver(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	clock := &manualClock{now: t0}
	opts := func() topology.RunnerOptions {
		return topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler),
			RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}}
	}
	topo, in, out, _ := stateTopoOf(2)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	a := runWith(t, topo, opts())
	for i, key := range keys {
		produce(t, k, in.Name(), key, strconv.Itoa(i), key, strconv.Itoa(10+i))
	}
	waitCommitted(t, topo, k, "g")
	topoB, _, _, _ := stateTopoOf(2)
	b := runWith(t, topoB, opts())
	a.stop(t) // b takes every partition
	clock.advance(11 * time.Minute)
	for _, key := range keys {
		outputs(t, k, out.Name(), key+"=silent")
	}
	for i := range 10 { // 12:30 on both partitions closes 10:00-11:00
		produce(t, k, in.Name(), "z"+strconv.Itoa(i), "150")
	}
	var want []string
	for _, key := range keys {
		want = append(want, key+"=closed:2", key+"=silent")
	}
	waitCommitted(t, topo, k, "g")
	got := outputs(t, k, out.Name(), want...)
	b.stop(t)
	count := map[string]int{}
	for _, kv := range got {
		count[kv]++
	}
	for _, key := range keys {
		if count[key+"=silent"] != 1 || count[key+"=closed:2"] != 1 {
			t.Errorf("%s: %d silent, %d closed:2, want 1 each (all outputs %v)", key, count[key+"=silent"], count[key+"=closed:2"], count)
		}
	}
}

// restartOutputsOnce checks the outputs of the restart scenarios: each of
// a-d silent once, and each window closed once with its count.
func restartOutputsOnce(t *testing.T, got []string) {
	t.Helper()
	count := map[string]int{}
	for _, kv := range got {
		count[kv]++
	}
	want := map[string]int{"a=silent": 1, "b=silent": 1, "c=silent": 1, "d=silent": 1,
		"a=closed:2": 1, "b=closed:1": 1, "c=closed:1": 1, "d=closed:1": 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("outputs %v\nwant    %v", count, want)
	}
}
