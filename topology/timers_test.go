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

// silence declares a group that schedules a wall-clock timer 10 minutes
// after each record of a key ("stop" cancels it) and emits the key when it
// fires; fail, when set, says what the timer's callback fails with.
func silence(fail func(key string) error) (*topology.Topology, topology.Stream[string], topology.Stream[string]) {
	topo := topology.New("silence")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	out := topology.NewStream(topo, "silent", codecs.String{}, topology.WithPartitions(1))
	p := topo.Processor("watch")
	emit := topology.Produce(p, out)
	tm := topology.Timer(p, "silent", codecs.String{}, func(c *topology.Context, key string, v string) error {
		if err := emit.Emit(c, c.Key(), key+":"+v); err != nil {
			return err
		}
		if fail != nil {
			return fail(key) // after the emit: a failure must discard it
		}
		return nil
	})
	topology.Consume(p, in, func(c *topology.Context, key string, v string) error {
		if v == "stop" {
			return tm.Cancel(c, key)
		}
		return tm.AtWallTime(c, key, c.Now().Add(10*time.Minute), v)
	})
	return topo, in, out
}

func values(rs []topologytest.Record[string]) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Key+"="+r.Value)
	}
	return out
}

// A wall-clock timer fires once when the driven clock passes it, with its
// key and value; a new record schedules it again.
func TestWallTimerFiresOnce(t *testing.T) {
	topo, in, out := silence(nil)
	d := topologytest.New(t, topo)
	d.SetWall(t0)
	topologytest.Send(d, in, "a", "v1")
	d.AdvanceWall(9 * time.Minute)
	if got := topologytest.Read(d, out); len(got) != 0 {
		t.Fatalf("fired early: %v", values(got))
	}
	d.AdvanceWall(time.Minute)
	d.AdvanceWall(time.Hour)
	if got := values(topologytest.Read(d, out)); len(got) != 1 || got[0] != "a=a:v1" {
		t.Fatalf("fired %v, want a=a:v1 once", got)
	}
	topologytest.Send(d, in, "a", "v2")
	d.AdvanceWall(11 * time.Minute)
	if got := values(topologytest.Read(d, out)); len(got) != 1 || got[0] != "a=a:v2" {
		t.Fatalf("fired %v, want a=a:v2 once", got)
	}
}

// Scheduling again moves a timer; Cancel removes it.
func TestTimerMovedAndCancelled(t *testing.T) {
	topo, in, out := silence(nil)
	d := topologytest.New(t, topo)
	d.SetWall(t0)
	topologytest.Send(d, in, "a", "first")
	topologytest.Send(d, in, "b", "x")
	d.AdvanceWall(5 * time.Minute)
	topologytest.Send(d, in, "a", "moved") // due at 10:15
	topologytest.Send(d, in, "b", "stop")
	d.AdvanceWall(6 * time.Minute) // 10:11
	if got := topologytest.Read(d, out); len(got) != 0 {
		t.Fatalf("fired %v, want nothing (a moved, b cancelled)", values(got))
	}
	d.AdvanceWall(4 * time.Minute)
	if got := values(topologytest.Read(d, out)); len(got) != 1 || got[0] != "a=a:moved" {
		t.Fatalf("fired %v, want a's moved timer", got)
	}
}

// A timer whose callback fails transiently fails the record that fired
// it, which is retried in place: the timer fires again, its output is
// written once.
func TestTransientTimerFailureFiresAgain(t *testing.T) {
	failures := 1
	topo, in, out := silence(func(string) error {
		if failures > 0 {
			failures--
			return topology.Transient(errors.New("busy"))
		}
		return nil
	})
	d := topologytest.New(t, topo)
	d.SetWall(t0)
	topologytest.Send(d, in, "a", "v")
	d.AdvanceWall(10 * time.Minute)
	if got := values(topologytest.Read(d, out)); len(got) != 1 || got[0] != "a=a:v" || failures != 0 {
		t.Fatalf("fired %v (failures left %d), want a=a:v once after the failure", got, failures)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters %+v, want none", dl)
	}
}

// A timer whose callback fails permanently is dead-lettered on its own:
// what it emitted is discarded, it does not fire again, and the other
// timers and records go on.
func TestPermanentTimerFailureIsDeadLettered(t *testing.T) {
	topo, in, out := silence(func(key string) error {
		if key == "bad" {
			return errors.New("refused")
		}
		return nil
	})
	d := topologytest.New(t, topo)
	d.SetWall(t0)
	topologytest.Send(d, in, "bad", "v")
	topologytest.Send(d, in, "a", "v")
	d.AdvanceWall(10 * time.Minute)
	d.AdvanceWall(10 * time.Minute)
	if got := values(topologytest.Read(d, out)); len(got) != 1 || got[0] != "a=a:v" {
		t.Fatalf("fired %v, want a's only", got)
	}
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != topology.ReasonCallbackError || !strings.Contains(dl[0].Error, `timer "silent" for "bad"`) || string(dl[0].Value) != "v" {
		t.Fatalf("dead letters %+v, want bad's timer once", dl)
	}
}

// A stream-time timer fires when a record of its partition moves stream
// time past it, in that record's callback, with the timer's key.
func TestStreamTimeTimer(t *testing.T) {
	topo := topology.New("st")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	out := topology.NewStream(topo, "out", codecs.String{}, topology.WithPartitions(1))
	p := topo.Processor("g")
	emit := topology.Produce(p, out)
	tm := topology.Timer(p, "due", codecs.String{}, func(c *topology.Context, key string, v string) error {
		return emit.Emit(c, c.Key(), v)
	})
	topology.Consume(p, in, func(c *topology.Context, key string, v string) error {
		if v == "arm" {
			return tm.AtStreamTime(c, key, c.RecordTime().Add(30*time.Minute), "due:"+key)
		}
		return nil
	})
	d := topologytest.New(t, topo)
	topologytest.SendAt(d, in, "a", at(0), "arm")
	topologytest.SendAt(d, in, "b", at(29), "x")
	d.AdvanceWall(24 * time.Hour) // wall time does not fire stream-time timers
	if got := topologytest.Read(d, out); len(got) != 0 {
		t.Fatalf("fired early: %v", values(got))
	}
	topologytest.SendAt(d, in, "b", at(30), "x")
	topologytest.SendAt(d, in, "b", at(90), "x")
	if got := values(topologytest.Read(d, out)); len(got) != 1 || got[0] != "a=due:a" {
		t.Fatalf("fired %v, want a's timer once", got)
	}
}

// A timer's callback cannot use the group table: it is read by the
// record's key, not the timer's.
func TestTimerCallbackRefusesTable(t *testing.T) {
	topo := topology.New("tt")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	p := topo.Processor("g")
	tb := topology.Persist(p, codecs.String{}, topology.WithPartitions(1))
	var got error
	tm := topology.Timer(p, "t", codecs.String{}, func(c *topology.Context, key string, v string) error {
		_, _, got = tb.Get(c)
		return nil
	})
	topology.Consume(p, in, func(c *topology.Context, key string, v string) error {
		return tm.AtWallTime(c, key, c.Now(), v)
	})
	d := topologytest.New(t, topo)
	topologytest.Send(d, in, "a", "v")
	d.AdvanceWall(time.Second)
	if got == nil || !strings.Contains(got.Error(), "timer") {
		t.Errorf("table read in a timer: %v", got)
	}
}
