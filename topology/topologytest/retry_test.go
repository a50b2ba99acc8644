package topologytest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// flaky fails each value transiently as many times as failures says, or
// for good when the count is negative.
type flaky struct {
	mu       sync.Mutex
	failures map[string]int
	calls    map[string]int
	down     int // probe answers "down" this many more times
	// outage marks the failures of values in it as topology.Outage.
	outage map[string]bool
}

func (f *flaky) handle(v string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[v]++
	n := f.failures[v]
	if n == 0 {
		return nil
	}
	if n > 0 {
		f.failures[v] = n - 1
	}
	if f.outage[v] {
		return topology.Outage(errors.New("store unavailable: 1 of 2 replicas alive"))
	}
	return topology.Transient(errors.New("store timed out on " + v))
}

func (f *flaky) probe(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down > 0 {
		f.down--
		return errors.New("store down")
	}
	return nil
}

func retryTopology(f *flaky, policy topology.RetryPolicy) (*topology.Topology, topology.Stream[string], topology.Stream[string]) {
	t := topology.New("rt")
	in := topology.NewStream(t, "in", codecs.String{}, topology.External("test"))
	out := topology.NewStream(t, "out", codecs.String{})
	p := t.Processor("store", topology.RetryBackoff(topology.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}), topology.WithRetryTopics(policy))
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		if err := f.handle(v); err != nil {
			return err
		}
		return emit.Emit(c, key, v)
	})
	return t, in, out
}

var fast = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}

// A record that keeps failing while others succeed leaves its partition
// for the retry topic and succeeds there; the records after it are not
// held up.
func TestRetryTopicRecovers(t *testing.T) {
	f := &flaky{failures: map[string]int{"poison": 4}, calls: map[string]int{}}
	topo, in, out := retryTopology(f, topology.RetryPolicy{InPlace: 2, Delays: fast, MaxAttempts: 6})
	d := topologytest.New(t, topo)
	topologytest.Send(d, in, "a", "good")
	topologytest.Send(d, in, "a", "poison")
	topologytest.Send(d, in, "a", "after")
	var got []string
	for _, r := range topologytest.Read(d, out) {
		got = append(got, r.Value)
	}
	if len(got) != 3 || got[0] != "good" || got[1] != "poison" || got[2] != "after" {
		t.Fatalf("outputs = %v", got)
	}
	if f.calls["poison"] != 5 {
		t.Errorf("poison handled %d times, want 5 (2 in place, 3 from retry topics)", f.calls["poison"])
	}
	retried := 0
	for _, name := range topo.Topics() {
		if name == "store-retry-1" || name == "store-retry-2" {
			retried++
		}
	}
	if retried != 2 {
		t.Errorf("retry topics = %v", topo.Topics())
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
}

// A record that never succeeds ends in the dead-letter topic after its
// attempts, with their count.
func TestRetryTopicRunsOutOfAttempts(t *testing.T) {
	f := &flaky{failures: map[string]int{"poison": -1}, calls: map[string]int{}}
	topo, in, out := retryTopology(f, topology.RetryPolicy{InPlace: 2, Delays: fast, MaxAttempts: 5})
	d := topologytest.New(t, topo)
	topologytest.Send(d, in, "a", "good")
	topologytest.Send(d, in, "a", "poison")
	if got := topologytest.Read(d, out); len(got) != 1 {
		t.Fatalf("outputs = %+v", got)
	}
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != topology.ReasonRetriesExhausted || dl[0].Attempts != 5 || string(dl[0].Value) != "poison" {
		t.Fatalf("dead letters = %+v", dl)
	}
	if f.calls["poison"] != 5 {
		t.Errorf("poison handled %d times, want 5", f.calls["poison"])
	}
	if dl[0].FirstFailure.IsZero() || dl[0].LastFailure.Before(dl[0].FirstFailure) {
		t.Errorf("failure times %v .. %v", dl[0].FirstFailure, dl[0].LastFailure)
	}
}

// In an outage (the probe says the store is down) the record waits in
// place instead of burning its attempts in the retry topics.
func TestOutagePausesInPlace(t *testing.T) {
	f := &flaky{failures: map[string]int{"x": 6}, calls: map[string]int{}, down: 4}
	policy := topology.RetryPolicy{InPlace: 2, Delays: fast, MaxAttempts: 3}
	policy.Probe = f.probe
	topo, in, out := retryTopology(f, policy)
	d := topologytest.New(t, topo)
	topologytest.Send(d, in, "a", "x")
	if got := topologytest.Read(d, out); len(got) != 1 || got[0].Value != "x" {
		t.Fatalf("outputs = %+v", got)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered: %+v", dl)
	}
}

// An error marked Outage is an outage whatever the probe answers (it
// always answers here): the record waits in place far past its attempts,
// never enters a retry topic and is never dead-lettered.
func TestOutageErrorPausesWhileProbeAnswers(t *testing.T) {
	f := &flaky{failures: map[string]int{"x": 12}, calls: map[string]int{}, outage: map[string]bool{"x": true}}
	topo, in, out := retryTopology(f, topology.RetryPolicy{InPlace: 2, Delays: fast, MaxAttempts: 3, Probe: f.probe})
	d := topologytest.New(t, topo)
	topologytest.Send(d, in, "a", "x")
	topologytest.Send(d, in, "a", "y")
	got := topologytest.Read(d, out)
	if len(got) != 2 || got[0].Value != "x" || got[1].Value != "y" {
		t.Fatalf("outputs = %+v, want x then y", got)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered: %+v", dl)
	}
	if f.calls["x"] != 13 {
		t.Errorf("x handled %d times, want 13 (all in place)", f.calls["x"])
	}
}

// A record already in a retry topic that meets an outage waits there too,
// past its attempts, instead of being dead-lettered.
func TestOutageErrorPausesRetriedRecord(t *testing.T) {
	f := &flaky{failures: map[string]int{"x": 8}, calls: map[string]int{}, outage: map[string]bool{"x": true}}
	topo, _, out := retryTopology(f, topology.RetryPolicy{InPlace: 2, Delays: fast, MaxAttempts: 3, Probe: f.probe})
	d := topologytest.New(t, topo)
	d.SendRaw("store-retry-1", "a", []byte("x"), topology.Header{Key: topology.HeaderRetryOrigin, Value: []byte("in")},
		topologytest.Header(topology.HeaderAttempts, 2))
	if got := topologytest.Read(d, out); len(got) != 1 || got[0].Value != "x" {
		t.Fatalf("outputs = %+v", got)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered: %+v", dl)
	}
	if f.calls["x"] != 9 {
		t.Errorf("x handled %d times, want 9 (all in the companion, in place)", f.calls["x"])
	}
}

// A replayed record carries its earlier attempts; failing again, its new
// envelope counts on from them.
func TestReplayedRecordKeepsItsAttempts(t *testing.T) {
	topo, text, _, _ := twoGroups()
	d := topologytest.New(t, topo)
	topologytest.Send(d, text, "k", "not a number", topologytest.Header(topology.HeaderAttempts, 4))
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Attempts != 5 {
		t.Fatalf("dead letters = %+v", dl)
	}
}

func TestRetryTopicsRefuseStatefulProcessors(t *testing.T) {
	tp := topology.New("x")
	s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"))
	p := tp.Processor("p", topology.WithRetryTopics(topology.RetryPolicy{}))
	topology.Persist(p, codecs.String{})
	topology.Consume(p, s, func(*topology.Context, string, string) error { return nil })
	if err := tp.Validate(); err == nil {
		t.Fatal("a stateful processor got retry topics")
	}
}

// A record replayed for one group is skipped by the other groups reading
// the same topic, and processed by its own.
func TestReplayForOneGroupOnly(t *testing.T) {
	tp := topology.New("rp")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"))
	out := topology.NewStream(tp, "out", codecs.String{})
	for _, name := range []string{"first", "second"} {
		p := tp.Processor(name)
		emit := topology.Produce(p, out)
		topology.Consume(p, in, func(c *topology.Context, key, v string) error {
			return emit.Emit(c, key, c.Group()+":"+v)
		})
	}
	d := topologytest.New(t, tp)
	topologytest.Send(d, in, "k", "x", topology.Header{Key: topology.HeaderReplayGroup, Value: []byte("second")})
	got := topologytest.Read(d, out)
	if len(got) != 1 || got[0].Value != "second:x" {
		t.Fatalf("outputs = %+v", got)
	}
}

// A group that takes replays for another group processes records replayed
// for it; records replayed for a third group are still skipped.
func TestReplayTakenForAnotherGroup(t *testing.T) {
	tp := topology.New("rp", topology.WithPrefix("x."))
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"))
	out := topology.NewStream(tp, "out", codecs.String{})
	p := tp.Processor("fused", topology.TakesReplaysFor("gone"))
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		return emit.Emit(c, key, c.Group()+":"+v)
	})
	d := topologytest.New(t, tp)
	topologytest.Send(d, in, "k", "a", topology.Header{Key: topology.HeaderReplayGroup, Value: []byte("x.gone")})
	topologytest.Send(d, in, "k", "b", topology.Header{Key: topology.HeaderReplayGroup, Value: []byte("x.other")})
	topologytest.Send(d, in, "k", "c", topology.Header{Key: topology.HeaderReplayGroup, Value: []byte("gone")})
	got := topologytest.Read(d, out)
	if len(got) != 1 || got[0].Value != "x.fused:a" {
		t.Fatalf("outputs = %+v", got)
	}
}
