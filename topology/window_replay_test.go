package topology_test

import (
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
)

// A record whose window changelog write was acknowledged but
// whose own output emit failed is replayed onto a rebuilt window that
// already holds it: counted twice. Whole windows and paned ones.
func TestAggregateReplayCountsOnce(t *testing.T) {
	hour := topology.Tumbling(time.Hour).Grace(10 * time.Minute)
	t.Run("whole", func(t *testing.T) { testAggregateReplayCountsOnce(t, hour) })
	t.Run("paned", func(t *testing.T) { testAggregateReplayCountsOnce(t, hour.Panes(10*time.Minute)) })
}

func testAggregateReplayCountsOnce(t *testing.T, w topology.Windows) {
	b, k := embeddedKafka(t)
	topo, in, out, p := minutesTopo("timestate")
	emit := topology.Produce(p, out)
	topology.Aggregate(p, in, w,
		func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{},
		topology.Merge(func(_ string, a, b int) int { return a + b }),
		topology.OnUpdate(func(c *topology.Context, key string, _ topology.Window, n int) error {
			return emit.Emit(c, key, "upd:"+strconv.Itoa(n))
		}),
		topology.OnClose(func(c *topology.Context, key string, _ topology.Window, n int) error {
			return emit.Emit(c, key, "closed:"+strconv.Itoa(n))
		}))
	run := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}})
	produce(t, k, in.Name(), "warm", "1")
	waitCommitted(t, topo, k, "g")
	fault := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out.Name(), Err: kerr.TopicAuthorizationFailed, Count: 1})
	produce(t, k, in.Name(), "a", "0")
	waitRefused(t, fault)
	outputs(t, k, out.Name(), "a=upd:1")
	produce(t, k, in.Name(), "z", "80") // closes 10:00-11:00
	got := outputs(t, k, out.Name(), "a=closed:1", "warm=closed:1")
	waitCommitted(t, topo, k, "g")
	run.stop(t)
	if slices.Contains(got, "a=upd:2") || slices.Contains(got, "a=closed:2") {
		t.Errorf("a's one record counted twice: %v", got)
	}
}

// Turning panes on for an aggregate keeps its changelog: a replica of the
// paned group rebuilt from windows written whole reads each as its first
// pane, adds to it and to the other panes, and closes each window with
// every record of before and after.
func TestPanesTurnedOnKeepWindowsWrittenWhole(t *testing.T) {
	hour := topology.Tumbling(time.Hour).Grace(10 * time.Minute)
	checkPaneChange(t, "upgrade", hour, hour.Panes(10*time.Minute),
		[]string{"a", "5", "a", "25", "b", "40"},
		[]string{"a", "8", "a", "35", "b", "55", "z", "75"},
		"a=10:00=4", "b=10:00=2")
}

// Panes made shorter after a clean stop keep the longer panes written
// before: a record in the minutes of an old pane adds to it (it reads as
// the shorter pane it starts with), others to new panes, and the window
// closes once with every record (an order-independent Merge).
func TestPanesMadeShorterKeepLongerPanes(t *testing.T) {
	hour := topology.Tumbling(time.Hour).Grace(10 * time.Minute)
	checkPaneChange(t, "shorter", hour.Panes(10*time.Minute), hour.Panes(2*time.Minute),
		[]string{"a", "5", "a", "25", "b", "40"},
		// a's 21 falls in the old pane of 10:20, 8 and 35 in new ones.
		[]string{"a", "8", "a", "21", "a", "35", "b", "55", "z", "75"},
		"a=10:00=5", "b=10:00=2")
}

// checkPaneChange runs a counting hourly aggregate declared with windows
// before on the records first (key, minute pairs), stops it cleanly, runs
// it declared with after from a fresh folder (rebuilt from the changelog)
// on second, and checks that the windows closed give want and nothing
// else.
func checkPaneChange(t *testing.T, name string, before, after topology.Windows, first, second []string, want ...string) {
	t.Helper()
	k := topology.Kafka{Brokers: startBroker(t)}
	declare := func(w topology.Windows) (*topology.Topology, topology.Stream[string], topology.Stream[string]) {
		topo, in, out, p := minutesTopo(name)
		emit := topology.Produce(p, out)
		topology.Aggregate(p, in, w, func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{},
			topology.Merge(func(_ string, a, b int) int { return a + b }),
			topology.OnClose(func(c *topology.Context, key string, w topology.Window, n int) error {
				return emit.Emit(c, key, w.Start.Format("15:04")+"="+strconv.Itoa(n))
			}))
		return topo, in, out
	}
	opts := func() topology.RunnerOptions {
		return topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	}
	old, in, _ := declare(before)
	r := runWith(t, old, opts())
	produce(t, k, in.Name(), first...)
	waitCommitted(t, old, k, "g")
	r.stop(t)

	changed, _, out := declare(after)
	r = runWith(t, changed, opts()) // a fresh folder: rebuilt from the changelog
	produce(t, k, in.Name(), second...)
	got := outputs(t, k, out.Name(), want...)
	waitCommitted(t, changed, k, "g")
	r.stop(t)
	if slices.ContainsFunc(got, func(s string) bool { return !slices.Contains(want, s) }) {
		t.Errorf("outputs %v, want only %v", got, want)
	}
}

// A paned window whose closing record fails after its panes' done marks
// were written (its output refused) closes again with the record's
// replay, once, with every pane.
func TestPanedCloseFailingBeforeItsCommitClosesAgainWhole(t *testing.T) {
	b, k := embeddedKafka(t)
	topo, in, out, p := minutesTopo("panedclose")
	emit := topology.Produce(p, out)
	topology.Aggregate(p, in, topology.Tumbling(time.Hour).Grace(10*time.Minute).Panes(10*time.Minute),
		func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{},
		topology.Merge(func(_ string, a, b int) int { return a + b }),
		topology.OnClose(func(c *topology.Context, key string, _ topology.Window, n int) error {
			return emit.Emit(c, key, "closed:"+strconv.Itoa(n))
		}))
	run := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}})
	produce(t, k, in.Name(), "a", "5", "a", "25", "a", "45")
	waitCommitted(t, topo, k, "g")
	fault := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out.Name(), Err: kerr.TopicAuthorizationFailed, Count: 1})
	produce(t, k, in.Name(), "z", "80") // closes a's 10:00: its output refused once
	waitRefused(t, fault)
	outputs(t, k, out.Name(), "a=closed:3")
	waitCommitted(t, topo, k, "g")
	run.stop(t)
	if got := outputs(t, k, out.Name(), "a=closed:3"); len(got) != 1 {
		t.Errorf("outputs %v, want a's window closed once with its 3 records", got)
	}
}

// embeddedKafka starts an in-process broker for the test.
func embeddedKafka(t *testing.T) (*embedded.Broker, topology.Kafka) {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, topology.Kafka{Brokers: b.Addrs()}
}

// minutesTopo declares stream "in" of minutes after t0 (its record time)
// and "out", one partition each, and processor "g".
func minutesTopo(name string) (*topology.Topology, topology.Stream[string], topology.Stream[string], *topology.Processor) {
	topo := topology.New(name)
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(_ string, v string) (time.Time, bool) { m, _ := strconv.Atoi(v); return at(m), true })
	out := topology.NewStream(topo, "out", codecs.String{}, topology.WithPartitions(1))
	return topo, in, out, topo.Processor("g")
}
