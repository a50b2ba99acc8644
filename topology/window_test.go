package topology_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

type hourCount struct {
	Key   string
	Start time.Time
	N     int
}

// counting declares an hourly count with 10 minutes' grace, emitted when a
// window closes, late records handled by late.
func counting(late topology.LatePolicy, w topology.Windows, opts ...topology.AggregateOption) (*topology.Topology, topology.Stream[string], topology.Stream[hourCount], topology.Windowed[int]) {
	topo := topology.New("win")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	out := topology.NewStream(topo, "out", codecs.JSON[hourCount]{}, topology.WithPartitions(1))
	p := topo.Processor("counts")
	emit := topology.Produce(p, out)
	onClose := topology.OnClose(func(c *topology.Context, key string, w topology.Window, n int) error {
		return emit.Emit(c, key, hourCount{Key: key, Start: w.Start, N: n})
	})
	h := topology.Aggregate(p, in, w,
		func() int { return 0 },
		func(_ string, _ string, n int) int { return n + 1 },
		codecs.JSON[int]{}, append([]topology.AggregateOption{onClose, topology.Late(late)}, opts...)...)
	return topo, in, out, h
}

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// Records count in their hour's window; a window closes once stream time
// passes its end plus the grace, emits once, and a record later than that
// goes to the dead-letter topic with reason late.
func TestTumblingWindowClosesAfterGrace(t *testing.T) {
	topo, in, out, h := counting(topology.LateDeadLetter, topology.Tumbling(time.Hour).Grace(10*time.Minute))
	d := topologytest.New(t, topo)
	for _, m := range []int{0, 20, 59} {
		topologytest.SendAt(d, in, "a", at(m), "x")
	}
	topologytest.SendAt(d, in, "b", at(30), "x")
	topologytest.SendAt(d, in, "a", at(65), "x") // next hour; the 10:00 window is in its grace
	topologytest.SendAt(d, in, "a", at(50), "x") // within grace: counted
	if got := topologytest.Read(d, out); len(got) != 0 {
		t.Fatalf("emitted before the grace passed: %+v", got)
	}
	ws := topologytest.Windows(d, h, "a", at(0), at(120))
	if len(ws) != 2 || ws[0].Value != 4 || ws[0].Closed || ws[1].Value != 1 || !ws[0].Start.Equal(at(0)) || !ws[0].End.Equal(at(60)) {
		t.Fatalf("windows of a: %+v", ws)
	}
	topologytest.SendAt(d, in, "c", at(70), "x") // stream time 11:10: 10:00-11:00 closes
	got := topologytest.Read(d, out)
	want := map[string]int{"a": 4, "b": 1}
	if len(got) != 2 {
		t.Fatalf("emitted %+v, want the two windows of 10:00", got)
	}
	for _, r := range got {
		if want[r.Key] != r.Value.N || !r.Value.Start.Equal(at(0)) {
			t.Errorf("emitted %+v, want counts %v at %v", r.Value, want, at(0))
		}
	}
	if ws := topologytest.Windows(d, h, "a", at(0), at(1)); len(ws) != 1 || !ws[0].Closed || ws[0].Value != 4 {
		t.Errorf("closed window of a: %+v", ws)
	}
	topologytest.SendAt(d, in, "a", at(30), "late")
	topologytest.SendAt(d, in, "c", at(200), "x") // closes 11:00 for a and c
	got = topologytest.Read(d, out)
	if len(got) != 2 {
		t.Errorf("emitted %+v, want a's and c's 11:00 windows only (nothing again for 10:00)", got)
	}
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != topology.ReasonLate || string(dl[0].Value) != "late" {
		t.Fatalf("dead letters %+v, want the late record", dl)
	}
	if ws := topologytest.Windows(d, h, "a", at(0), at(1)); len(ws) != 1 || ws[0].Value != 4 {
		t.Errorf("a late record changed the closed window: %+v", ws)
	}
}

// With Late(LateSkip) a late record is dropped: no dead letter, no count.
func TestLateRecordsSkipped(t *testing.T) {
	topo, in, _, h := counting(topology.LateSkip, topology.Tumbling(time.Hour))
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(0), "x")
	topologytest.SendAt(d, in, "a", at(90), "x")
	topologytest.SendAt(d, in, "a", at(10), "late")
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters %+v, want none", dl)
	}
	if ws := topologytest.Windows(d, h, "a", at(0), at(1)); len(ws) != 1 || ws[0].Value != 1 || !ws[0].Closed {
		t.Errorf("window 10:00 of a: %+v", ws)
	}
}

// A hopping window's record counts in every window that holds it.
func TestHoppingWindows(t *testing.T) {
	topo, in, out, h := counting(topology.LateDeadLetter, topology.Hopping(time.Hour, 30*time.Minute))
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(40), "x") // windows 10:00-11:00 and 10:30-11:30
	topologytest.SendAt(d, in, "a", at(70), "x") // 10:30-11:30 and 11:00-12:00; closes 10:00-11:00
	ws := topologytest.Windows(d, h, "a", at(-60), at(120))
	var starts []int
	for _, w := range ws {
		starts = append(starts, int(w.Start.Sub(t0).Minutes()))
	}
	if len(ws) != 3 || starts[0] != 0 || starts[1] != 30 || starts[2] != 60 || ws[0].Value != 1 || !ws[0].Closed || ws[1].Value != 2 || ws[2].Value != 1 {
		t.Fatalf("windows %v: %+v", starts, ws)
	}
	if got := topologytest.Read(d, out); len(got) != 1 || got[0].Value.N != 1 || !got[0].Value.Start.Equal(at(0)) {
		t.Errorf("emitted %+v, want 10:00's window only", got)
	}
}

// OnUpdate emits after every update.
func TestEmitEveryUpdate(t *testing.T) {
	topo := topology.New("upd")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	out := topology.NewStream(topo, "out", codecs.JSON[int]{}, topology.WithPartitions(1))
	p := topo.Processor("g")
	emit := topology.Produce(p, out)
	topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{},
		topology.OnUpdate(func(c *topology.Context, key string, _ topology.Window, n int) error { return emit.Emit(c, key, n) }))
	d := topologytest.New(t, topo)
	for range 3 {
		topologytest.SendAt(d, in, "k", at(1), "x")
	}
	got := topologytest.Read(d, out)
	if len(got) != 3 || got[0].Value != 1 || got[2].Value != 3 {
		t.Errorf("emitted %+v, want 1, 2, 3", got)
	}
}

// A close that fails transiently fails the record that closed it, which is
// retried in place; one that fails permanently dead-letters its window
// alone: the window is closed and the record counted.
func TestFailedClose(t *testing.T) {
	transient := 1
	topo, in, _, h := counting(topology.LateDeadLetter, topology.Tumbling(time.Hour),
		topology.OnClose(func(c *topology.Context, key string, w topology.Window, n int) error {
			switch {
			case key == "bad":
				return errors.New("refused")
			case transient > 0:
				transient--
				return topology.Transient(errors.New("busy"))
			}
			return nil
		}))
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(0), "x")
	topologytest.SendAt(d, in, "bad", at(1), "x")
	topologytest.SendAt(d, in, "b", at(61), "x") // closes a's and bad's 10:00
	if transient != 0 {
		t.Errorf("the transient failure was not met")
	}
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != topology.ReasonCallbackError || !strings.Contains(dl[0].Error, `"bad"`) || string(dl[0].Value) != "1" {
		t.Fatalf("dead letters %+v, want bad's window (its count, 1)", dl)
	}
	for _, k := range []string{"a", "bad"} {
		if ws := topologytest.Windows(d, h, k, at(0), at(1)); len(ws) != 1 || !ws[0].Closed {
			t.Errorf("%s's window: %+v, want closed", k, ws)
		}
	}
	if ws := topologytest.Windows(d, h, "b", at(0), at(120)); len(ws) != 1 || ws[0].Value != 1 {
		t.Errorf("the closing record was not counted: %+v", ws)
	}
}

// The framework declares the changelog: compacted, deleted after the
// retention plus a day, partitioned like the input, shown by Describe.
func TestWindowChangelogIsDeclared(t *testing.T) {
	topo := topology.New("decl")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(3), topology.External("test"))
	p := topo.Processor("g")
	topology.Aggregate(p, in, topology.Tumbling(time.Hour).Grace(10*time.Minute), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{}, topology.Named("hourly"))
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, td := range topo.Describe().Topics {
		if td.Name == "g-hourly-windows" {
			found = true
			if td.Partitions != 3 || td.Cleanup != "compact" || td.ProducedBy != "g" || td.Kind != "state" {
				t.Errorf("changelog described as %+v", td)
			}
		}
	}
	if !found {
		t.Fatalf("no changelog in %+v", topo.Describe().Topics)
	}
	var sb strings.Builder
	if err := topo.Describe().Write(&sb, topology.FormatText); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "g-hourly-windows") {
		t.Errorf("text description lacks the changelog:\n%s", sb.String())
	}
}

// Invalid windows are declaration errors.
func TestInvalidWindowsRefused(t *testing.T) {
	topo := topology.New("bad")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.External("test"))
	p := topo.Processor("g")
	topology.Aggregate(p, in, topology.Hopping(time.Hour, 2*time.Hour), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{})
	if err := topo.Validate(); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Errorf("Validate: %v", err)
	}
}

// Retry topics do not carry windows and timers: Validate refuses a group
// with both.
func TestStateRefusesRetryTopics(t *testing.T) {
	topo := topology.New("retrystate")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.External("test"))
	p := topo.Processor("g", topology.WithRetryTopics(topology.RetryPolicy{}))
	topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{})
	if err := topo.Validate(); err == nil || !strings.Contains(err.Error(), "retry topics") {
		t.Errorf("Validate: %v", err)
	}
}

// Session windows: records less than the gap apart share a session, a
// record bridging two sessions merges them, and the merged session closes
// once, by stream time.
func TestSessionWindowsMerge(t *testing.T) {
	topo, in, out, h := counting(topology.LateDeadLetter, topology.Sessions(10*time.Minute).Grace(30*time.Minute),
		topology.Merge(func(_ string, a, b int) int { return a + b }))
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(0), "x")
	topologytest.SendAt(d, in, "a", at(18), "x")
	if ws := topologytest.Windows(d, h, "a", at(0), at(60)); len(ws) != 2 || !ws[0].End.Equal(at(10)) || !ws[1].Start.Equal(at(18)) {
		t.Fatalf("two sessions expected: %+v", ws)
	}
	topologytest.SendAt(d, in, "a", at(9), "x") // bridges [0,10) and [18,28)
	ws := topologytest.Windows(d, h, "a", at(0), at(60))
	if len(ws) != 1 || ws[0].Value != 3 || !ws[0].Start.Equal(at(0)) || !ws[0].End.Equal(at(28)) || ws[0].Closed {
		t.Fatalf("merged session: %+v", ws)
	}
	topologytest.SendAt(d, in, "b", at(27), "x")
	if got := topologytest.Read(d, out); len(got) != 0 {
		t.Fatalf("closed early: %+v", got)
	}
	topologytest.SendAt(d, in, "b", at(70), "x") // stream time 11:10: a's session and b's first close
	got := topologytest.Read(d, out)
	if len(got) != 2 || got[0].Key != "a" || got[0].Value.N != 3 || !got[0].Value.Start.Equal(at(0)) || got[1].Key != "b" || got[1].Value.N != 1 {
		t.Fatalf("emitted %+v, want a's merged session of 3, then b's of 1", got)
	}
	topologytest.SendAt(d, in, "a", at(5), "late")
	if dl := d.DeadLetters(); len(dl) != 1 || dl[0].Reason != topology.ReasonLate {
		t.Errorf("dead letters %+v, want the late record", dl)
	}
}

// Session windows need a Merge.
func TestSessionsNeedMerge(t *testing.T) {
	topo, _, _, _ := counting(topology.LateDeadLetter, topology.Sessions(time.Minute))
	if err := topo.Validate(); err == nil || !strings.Contains(err.Error(), "Merge") {
		t.Errorf("Validate: %v", err)
	}
}

// Closing reads the windows' end index only once stream time passes the
// end of the first pending window: a window written after that end was
// learnt, ending earlier (a record within the grace of the hour before),
// or by the record whose stream time moved the scan, must still close on
// time.
func TestWindowsCloseOnTimeBetweenScans(t *testing.T) {
	topo, in, out, _ := counting(topology.LateDeadLetter, topology.Tumbling(time.Hour).Grace(10*time.Minute))
	d := topologytest.New(t, topo)
	closed := func(want ...string) {
		t.Helper()
		var got []string
		for _, r := range topologytest.Read(d, out) {
			got = append(got, r.Value.Key+"@"+r.Value.Start.Format("15:04"))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("closed %v, want %v", got, want)
		}
	}
	topologytest.SendAt(d, in, "a", at(65), "x") // 11:00-12:00; nothing due before 12:00
	topologytest.SendAt(d, in, "b", at(58), "x") // 10:00-11:00, in its grace: due first
	closed()
	topologytest.SendAt(d, in, "a", at(72), "x") // stream time past 11:10
	closed("b@10:00")
	// The record that closes a's hour also opens c's, which ends after
	// every window of the store.
	topologytest.SendAt(d, in, "c", at(150), "x")
	closed("a@11:00")
	topologytest.SendAt(d, in, "d", at(195), "x") // past 13:10
	closed("c@12:00")
}
