package topologytest

import (
	"context"
	"slices"
	"time"

	"github.com/lovoo/goka/tester"

	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/internal/timectl"
)

// driverTime is a driver's wall clock, and where its groups' wall-clock
// timers are fired from.
type driverTime struct {
	ctl *timectl.Control
	// ticks are the ticks topics of the running groups.
	ticks []string
	// groups are the groups the driver runs.
	groups []string
}

func newDriverTime(topo *topology.Topology, procs []*topology.Processor) *driverTime {
	dt := &driverTime{ctl: timectl.New(time.Now().UTC().Truncate(time.Second))}
	var groups []string
	for _, p := range procs {
		groups = append(groups, p.Group())
	}
	for _, td := range topo.Describe().Topics {
		if td.Kind == "ticks" && slices.Contains(groups, td.ProducedBy) {
			dt.ticks = append(dt.ticks, td.Name)
		}
	}
	dt.groups = groups
	return dt
}

func (dt *driverTime) context(ctx context.Context) context.Context { return timectl.With(ctx, dt.ctl) }

// SendAt is Send of a record whose Kafka timestamp is at: its record time,
// unless its stream declares another (Stream.TimedBy).
func SendAt[V any](d *Driver, s topology.Stream[V], key string, at time.Time, v V, headers ...topology.Header) {
	d.tb.Helper()
	b, err := s.Codec().Encode(v)
	if err != nil {
		d.tb.Fatalf("topologytest: encode for %s: %v", s.Name(), err)
	}
	opts := []tester.EmitOption{tester.WithTime(at)}
	if h := gokaHeaders(headers); h != nil {
		opts = append(opts, tester.WithHeaders(h))
	}
	d.gt.Consume(s.Name(), key, b, opts...)
}

// Now returns the driver's wall-clock time, what Context.Now tells the
// processors. It starts at the driver's start, to the second.
func (d *Driver) Now() time.Time { return d.time.ctl.Now() }

// SetWall sets the driver's wall clock to t, then fires the wall-clock
// timers due by then, as a Runner's tick would: when it returns, every
// firing and what it caused has been handled. The clock may go back.
func (d *Driver) SetWall(t time.Time) {
	d.tb.Helper()
	d.time.ctl.Set(t)
	for _, topic := range d.time.ticks {
		d.gt.Consume(topic, "tick", []byte(t.UTC().Format(time.RFC3339Nano)))
	}
}

// AdvanceWall moves the driver's wall clock forward by dt and fires the
// wall-clock timers due by then (see SetWall).
func (d *Driver) AdvanceWall(dt time.Duration) {
	d.tb.Helper()
	d.SetWall(d.Now().Add(dt))
}

// Windows returns key's windows of aggregate w that start in [from, to),
// oldest first, closed or not. It fails the test for a handle of no
// declared aggregate or of a group the driver does not run.
func Windows[A any](d *Driver, w topology.Windowed[A], key string, from, to time.Time) []topology.WindowValue[A] {
	d.tb.Helper()
	if w.Name() == "<undeclared>" {
		d.tb.Fatalf("topologytest: windows of %q: the aggregate of %q was not declared", key, w.Group())
	}
	if !slices.Contains(d.time.groups, w.Group()) {
		d.tb.Fatalf("topologytest: windows of %q in %s: the driver does not run group %q", key, w.Name(), w.Group())
	}
	src, _ := d.time.ctl.Runtime(w.Group()).(topology.WindowSource)
	if src == nil {
		return nil // the group has handled nothing yet: no windows
	}
	out, err := w.Fetch(src, key, from, to)
	if err != nil {
		d.tb.Fatalf("topologytest: windows of %q in %s: %v", key, w.Name(), err)
	}
	return out
}
