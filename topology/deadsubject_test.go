package topology_test

import (
	"errors"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// The dead letter of a failing timer or window close is the timer's or
// the window's, not the record's that fired or closed it: its key is the
// timer's or window's, its topic the state changelog, its stage marked so
// that a replay does not write the timer's value or the aggregate into an
// input topic.
func TestTimerAndWindowDeadLettersNameTheirSubject(t *testing.T) {
	topo := topology.New("subj")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	p := topo.Processor("g")
	tm := topology.Timer(p, "t", codecs.String{}, func(*topology.Context, string, string) error {
		return topology.Reject("bad_timer", errors.New("the timer fails"))
	})
	h := topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{},
		topology.OnClose(func(*topology.Context, string, topology.Window, int) error {
			return topology.Reject("bad_close", errors.New("the close fails"))
		}),
		topology.OnUpdate(func(c *topology.Context, key string, _ topology.Window, _ int) error {
			return tm.AtStreamTime(c, "timer-of-"+key, c.RecordTime().Add(time.Minute), "v")
		}))
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(0), "x")
	topologytest.SendAt(d, in, "z", at(90), "x") // fires a's timer, closes a's window
	got := map[string]bool{}
	for _, e := range d.DeadLetters() {
		got[e.Reason] = true
		switch e.Reason {
		case "bad_timer":
			if string(e.Key) != "timer-of-a" || e.Topic != "g-timers" || e.Stage != "g"+topology.StageSuffixTimer || string(e.Value) != "v" {
				t.Errorf("timer's dead letter: stage %q topic %q key %q value %q", e.Stage, e.Topic, e.Key, e.Value)
			}
		case "bad_close":
			if string(e.Key) != "a" || e.Topic != h.Name() || e.Stage != "g"+topology.StageSuffixWindow || string(e.Value) != "1" {
				t.Errorf("window's dead letter: stage %q topic %q key %q value %q", e.Stage, e.Topic, e.Key, e.Value)
			}
		default:
			t.Errorf("dead letter %+v", e)
		}
	}
	if !got["bad_timer"] || !got["bad_close"] {
		t.Errorf("dead letters of %v, want the timer's and the window's", got)
	}
}
