package topology_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// listed declares an hourly aggregate that keeps every record's value
// (sorted in a pane, panes concatenated), telling each update and each
// close to out as "update|close key start values".
func listed(w topology.Windows) (*topology.Topology, topology.Stream[int], topology.Stream[string], topology.Windowed[[]int]) {
	topo := topology.New("panes")
	in := topology.NewStream(topo, "in", codecs.JSON[int]{}, topology.WithPartitions(1), topology.External("test"))
	out := topology.NewStream(topo, "out", codecs.String{}, topology.WithPartitions(1))
	p := topo.Processor("lists")
	emit := topology.Produce(p, out)
	tell := func(what string) topology.WindowFunc[[]int] {
		return func(c *topology.Context, key string, w topology.Window, vs []int) error {
			return emit.Emit(c, key, fmt.Sprintf("%s %s %s %v", what, key, w.Start.Format(time.TimeOnly), vs))
		}
	}
	h := topology.Aggregate(p, in, w, func() []int { return nil },
		func(_ string, v int, vs []int) []int {
			i, _ := slices.BinarySearch(vs, v)
			return slices.Insert(vs, i, v)
		},
		codecs.JSON[[]int]{},
		// Concatenated, not sorted: a pane merged out of time order
		// shows.
		topology.Merge(func(_ string, a, b []int) []int { return append(slices.Clone(a), b...) }),
		topology.OnUpdate(tell("update")), topology.OnClose(tell("close")), topology.Late(topology.LateSkip))
	return topo, in, out, h
}

// A paned window tells exactly what the same window kept whole tells: every
// update, every close, every fetch, for records in and out of order, late
// ones and several keys; and its changelog writes less, a record rewriting
// its pane only.
func TestPanedWindowsTellWhatWholeWindowsTell(t *testing.T) {
	hour := topology.Tumbling(time.Hour).Grace(10 * time.Minute)
	for seed := range uint64(6) {
		// Up to 6 or 60 panes a window, merged as trees of odd and even
		// sizes. A record's value orders it by minute, so the panes
		// concatenated in time order are the whole window's sorted list.
		pane := []time.Duration{10 * time.Minute, time.Minute}[seed%2]
		t.Run(fmt.Sprint("seed=", seed, "/pane=", pane), func(t *testing.T) {
			whole, wholeIn, wholeOut, wholeH := listed(hour)
			paned, panedIn, panedOut, panedH := listed(hour.Panes(pane))
			dw, dp := topologytest.New(t, whole), topologytest.New(t, paned)
			rng := rand.New(rand.NewPCG(seed, 7))
			stream := 0 // minutes after t0
			for i := range 400 {
				stream += rng.IntN(3)
				m := stream - rng.IntN(90) // some within the grace, some late
				key := string(rune('a' + rng.IntN(3)))
				v := m*1000 + i
				topologytest.SendAt(dw, wholeIn, key, at(m), v)
				topologytest.SendAt(dp, panedIn, key, at(m), v)
			}
			topologytest.SendAt(dw, wholeIn, "z", at(stream+200), 0) // closes every window
			topologytest.SendAt(dp, panedIn, "z", at(stream+200), 0)
			want, got := told(topologytest.Read(dw, wholeOut)), told(topologytest.Read(dp, panedOut))
			if !slices.Equal(got, want) {
				t.Fatalf("paned told %d outputs, whole %d; first difference:\n%s", len(got), len(want), firstDiff(got, want))
			}
			if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "close") }) {
				t.Fatal("no window closed: the test tells nothing")
			}
			for _, key := range []string{"a", "b", "c"} {
				ww := topologytest.Windows(dw, wholeH, key, at(-120), at(stream+300))
				pw := topologytest.Windows(dp, panedH, key, at(-120), at(stream+300))
				if fmt.Sprint(pw) != fmt.Sprint(ww) {
					t.Fatalf("fetch of %s: paned %v\nwhole %v", key, pw, ww)
				}
			}
			// A range from mid-window: windows starting in it only.
			ww := topologytest.Windows(dw, wholeH, "a", at(30), at(150))
			pw := topologytest.Windows(dp, panedH, "a", at(30), at(150))
			if fmt.Sprint(pw) != fmt.Sprint(ww) {
				t.Fatalf("fetch from mid-window: paned %v\nwhole %v", pw, ww)
			}
		})
	}
}

// A record rewrites its pane only: an hour of 360 records in six panes
// writes a sixth of what the whole window writes, give or take each
// record's key and headers.
func TestPanedWindowWritesItsPaneOnly(t *testing.T) {
	hour := topology.Tumbling(time.Hour)
	whole, wholeIn, _, wholeH := listed(hour)
	paned, panedIn, _, panedH := listed(hour.Panes(10 * time.Minute))
	dw, dp := topologytest.New(t, whole), topologytest.New(t, paned)
	for i := range 360 {
		topologytest.SendAt(dw, wholeIn, "a", t0.Add(time.Duration(i)*10*time.Second), i)
		topologytest.SendAt(dp, panedIn, "a", t0.Add(time.Duration(i)*10*time.Second), i)
	}
	wb, pb := changelogBytes(dw, wholeH.Name()), changelogBytes(dp, panedH.Name())
	if pb*4 > wb {
		t.Errorf("paned changelog %d bytes, whole %d: want under a quarter", pb, wb)
	}
}

func told(rs []topologytest.Record[string]) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Value
	}
	return out
}

func firstDiff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("#%d paned %q\n#%d whole  %q", i, g, i, w)
		}
	}
	return ""
}

func changelogBytes(d *topologytest.Driver, topic string) int {
	n := 0
	for _, r := range d.ReadRaw(topic) {
		n += len(r.Key) + len(r.Value)
	}
	return n
}

// Panes are for tumbling windows they divide, with a Merge.
func TestPanesRefusedWhereTheyDoNotFit(t *testing.T) {
	for name, tc := range map[string]struct {
		w     topology.Windows
		merge bool
		want  string
	}{
		"hopping":      {topology.Hopping(time.Hour, 10*time.Minute).Panes(10 * time.Minute), true, "panes are for tumbling windows"},
		"sessions":     {topology.Sessions(time.Minute).Panes(time.Minute), true, "panes are for tumbling windows"},
		"not dividing": {topology.Tumbling(time.Hour).Panes(7 * time.Minute), true, "do not divide"},
		"no merge":     {topology.Tumbling(time.Hour).Panes(10 * time.Minute), false, "paned windows need Merge"},
	} {
		t.Run(name, func(t *testing.T) {
			topo := topology.New("panes")
			in := topology.NewStream(topo, "in", codecs.JSON[int]{}, topology.WithPartitions(1), topology.External("test"))
			p := topo.Processor("g")
			opts := []topology.AggregateOption{}
			if tc.merge {
				opts = append(opts, topology.Merge(func(_ string, a, b int) int { return a + b }))
			}
			topology.Aggregate(p, in, tc.w, func() int { return 0 }, func(_ string, v, n int) int { return n + v }, codecs.JSON[int]{}, opts...)
			err := topo.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// A paned window whose close fails on its merits is dead-lettered whole:
// the dead letter holds the panes combined.
func TestPanedWindowCloseFailureDeadLettersTheWindow(t *testing.T) {
	topo, in := appended(
		func(_ string, a, b []int) []int { return append(a, b...) },
		func(_ *topology.Context, _ string, _ topology.Window, vs []int) error {
			return topology.Reject("bad_window", fmt.Errorf("refused %v", vs))
		})
	d := topologytest.New(t, topo)
	for _, m := range []int{5, 25, 45} {
		topologytest.SendAt(d, in, "a", at(m), m)
	}
	topologytest.SendAt(d, in, "b", at(61), 0) // closes a's 10:00
	dead := d.DeadLetters()
	if len(dead) != 1 || dead[0].Reason != "bad_window" || string(dead[0].Value) != "[5,25,45]" {
		t.Fatalf("dead letters %+v, want a's window [5,25,45] with reason bad_window", dead)
	}
}

// A paned window whose panes cannot be combined (Merge panics) loses none:
// each pane goes to the dead-letter topic as stored.
func TestPanedWindowMergeFailureDeadLettersEveryPane(t *testing.T) {
	topo, in := appended(
		func(_ string, a, b []int) []int { panic("cannot merge") },
		func(*topology.Context, string, topology.Window, []int) error { return nil })
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(5), 5)
	topologytest.SendAt(d, in, "a", at(25), 25)
	topologytest.SendAt(d, in, "b", at(61), 0) // closes a's 10:00
	var got []string
	for _, e := range d.DeadLetters() {
		got = append(got, e.Reason+" "+string(e.Value))
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"panic [5]", "panic [25]"}) {
		t.Fatalf("dead letters %q, want each pane with reason panic", got)
	}
}

// A fetch up to the end of time finds paned windows as it finds whole ones.
func TestPanedFetchToTheEndOfTime(t *testing.T) {
	topo, in, _, h := listed(topology.Tumbling(time.Hour).Panes(10 * time.Minute))
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(5), 1)
	ws := topologytest.Windows(d, h, "a", at(0), time.UnixMilli(math.MaxInt64))
	if len(ws) != 1 || fmt.Sprint(ws[0].Value) != "[1]" {
		t.Fatalf("windows %+v, want the 10:00 window", ws)
	}
}

// appended declares an hourly aggregate in 10-minute panes appending
// every record's value, with merge and onClose.
func appended(merge func(string, []int, []int) []int, onClose topology.WindowFunc[[]int]) (*topology.Topology, topology.Stream[int]) {
	topo := topology.New("panes")
	in := topology.NewStream(topo, "in", codecs.JSON[int]{}, topology.WithPartitions(1), topology.External("test"))
	topology.Aggregate(topo.Processor("g"), in, topology.Tumbling(time.Hour).Panes(10*time.Minute), func() []int { return nil },
		func(_ string, v int, vs []int) []int { return append(vs, v) }, codecs.JSON[[]int]{},
		topology.Merge(merge), topology.OnClose(onClose))
	return topo, in
}
