// Package topologytest drives a whole topology inside one test, without a
// broker: records sent to an input flow through every processor group, and
// the test reads outputs, tables and the dead-letter topic.
//
// It runs the very callbacks the Runner runs, on goka's tester, so the
// failure policies (dead letters, panics, retries) behave as in production.
// Processing is synchronous: when Send returns, every record it caused has
// been handled.
package topologytest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/tester"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/deadletter"
	"github.com/watershed-io/watershed/topology/internal/gokabind"
)

// Driver runs a topology on goka's tester.
type Driver struct {
	tb       testing.TB
	topo     *topology.Topology
	gt       *tester.Tester
	trackers map[string]*tester.QueueTracker
	// time is the driven wall clock and the groups' state (time.go).
	time *driverTime
}

// Record is one record read from a stream.
type Record[V any] struct {
	Key     string
	Value   V
	Headers map[string][]byte
}

// New builds topo and starts the named groups (all when none are named)
// on a fresh tester. The processors stop when the test ends.
func New(tb testing.TB, topo *topology.Topology, groups ...string) *Driver {
	tb.Helper()
	return NewWith(tb, topo, Options{Groups: groups})
}

// Options configure NewWith.
type Options struct {
	// Groups are the groups to run (all when empty).
	Groups []string
	// Resources are the values of the resources the groups use (see
	// topology.Resource), as a Runner gets them.
	Resources []topology.Provided
}

// NewWith is New with options: the groups to run and their resources.
func NewWith(tb testing.TB, topo *topology.Topology, opts Options) *Driver {
	tb.Helper()
	plan, err := topo.Build()
	if err != nil {
		tb.Fatalf("topologytest: %v", err)
	}
	procs, err := plan.Select(opts.Groups)
	if err != nil {
		tb.Fatalf("topologytest: %v", err)
	}
	have := map[string]bool{}
	for _, r := range opts.Resources {
		have[r.Name()] = true
	}
	for _, p := range procs {
		for _, name := range p.Resources() {
			if !have[name] {
				tb.Fatalf("topologytest: group %q uses resource %q, which Options.Resources lacks", p.Group(), name)
			}
		}
	}
	d := &Driver{tb: tb, topo: topo, gt: tester.New(tb), trackers: map[string]*tester.QueueTracker{}, time: newDriverTime(topo, procs)}
	ctx, cancel := context.WithCancel(d.time.context(topology.WithResources(context.Background(), opts.Resources...)))
	var done []chan error
	for i, p := range procs {
		bind := &gokabind.Request{Group: p.Group()}
		if err := plan.Bind(bind); err != nil {
			cancel()
			tb.Fatalf("topologytest: %v", err)
		}
		building := true
		gp, err := bind.Binding.NewProcessor(nil, goka.WithTester(d.gt), goka.WithLogger(quiet{}),
			goka.WithConsumerSaramaBuilder(d.consumers(i, &building)))
		building = false
		if err != nil {
			cancel()
			tb.Fatalf("topologytest: %v", err)
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- gp.Run(ctx) }()
	}
	tb.Cleanup(func() {
		cancel()
		for _, ch := range done {
			select {
			case err := <-ch:
				if err != nil {
					tb.Errorf("topologytest: processor stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				tb.Errorf("topologytest: processor did not stop")
			}
		}
	})
	// Track every topic from the start, so Read returns everything emitted
	// since the driver started.
	for _, name := range plan.Topics() {
		d.trackers[name] = d.gt.NewQueueTracker(name)
	}
	return d
}

// consumers returns the sarama consumer builder of processor i. goka
// builds a processor's lookup views while the processor is built
// (*building), with the processor's client ID, and the processor's own
// consumer (its table and joins) when it runs. The tester's consumer of a
// client takes one partition consumer per topic, so a processor that both
// joins and looks up a table had its view and its join race for the
// table's topic, and the loser failed ("Got duplicate consume partition").
// Each view gets a client of its own instead, as a separate sarama
// consumer would have with Kafka. The clients are registered while the
// processor is built, before any Send waits for the tester's clients.
func (d *Driver) consumers(i int, building *bool) goka.SaramaConsumerBuilder {
	views := 0
	return func(brokers []string, clientID string) (sarama.Consumer, error) {
		if *building {
			views++
			gg := goka.DefineGroup(goka.Group("topologytest-lookup-" + strconv.Itoa(i) + "-" + strconv.Itoa(views)))
			clientID = d.gt.RegisterGroupGraph(gg)
		}
		return d.gt.ConsumerBuilder()(brokers, clientID)
	}
}

// Send encodes v with s's codec and delivers it to s's consumers, then
// waits until every processor has handled everything it caused.
func Send[V any](d *Driver, s topology.Stream[V], key string, v V, headers ...topology.Header) {
	d.tb.Helper()
	b, err := s.Codec().Encode(v)
	if err != nil {
		d.tb.Fatalf("topologytest: encode for %s: %v", s.Name(), err)
	}
	d.SendRaw(s.Name(), key, b, headers...)
}

// SendRaw delivers raw bytes to topic, for records that do not decode.
func (d *Driver) SendRaw(topic, key string, raw []byte, headers ...topology.Header) {
	d.tb.Helper()
	var opts []tester.EmitOption
	if h := gokaHeaders(headers); h != nil {
		opts = append(opts, tester.WithHeaders(h))
	}
	d.gt.Consume(topic, key, raw, opts...)
}

func gokaHeaders(headers []topology.Header) goka.Headers {
	if len(headers) == 0 {
		return nil
	}
	h := goka.Headers{}
	for _, x := range headers {
		h[x.Key] = x.Value
	}
	return h
}

// Read returns the records emitted to s since the last Read of s.
func Read[V any](d *Driver, s topology.Stream[V]) []Record[V] {
	d.tb.Helper()
	var out []Record[V]
	qt := d.trackers[s.Name()]
	if qt == nil {
		d.tb.Fatalf("topologytest: %s is not a topic of the topology", s.Name())
	}
	for {
		h, key, raw, ok := qt.NextRawWithHeaders()
		if !ok {
			return out
		}
		v, err := s.Codec().Decode(raw)
		if err != nil {
			d.tb.Fatalf("topologytest: decode record of %s: %v", s.Name(), err)
		}
		out = append(out, Record[V]{Key: key, Value: v, Headers: h})
	}
}

// DeadLetters returns the envelopes sent to the dead-letter topic since the
// last call.
func (d *Driver) DeadLetters() []deadletter.Envelope {
	d.tb.Helper()
	var out []deadletter.Envelope
	for _, r := range Read(d, d.topo.DeadLetters()) {
		out = append(out, r.Value)
	}
	return out
}

// TableValue returns the value of key in table tb.
func TableValue[V any](d *Driver, tb topology.Table[V], key string) (V, bool) {
	d.tb.Helper()
	var zero V
	raw, _ := d.gt.TableValue(goka.Table(tb.Name()), key).([]byte)
	if raw == nil {
		return zero, false
	}
	v, err := tb.Codec().Decode(raw)
	if err != nil {
		d.tb.Fatalf("topologytest: decode %s[%q]: %v", tb.Name(), key, err)
	}
	return v, true
}

// TableKeys returns the keys of table tb.
func TableKeys[V any](d *Driver, tb topology.Table[V]) []string {
	return d.gt.GetTableKeys(goka.Table(tb.Name()))
}

// Header is a shorthand for a topology.Header with a decimal value.
func Header(key string, v int64) topology.Header {
	return topology.Header{Key: key, Value: []byte(strconv.FormatInt(v, 10))}
}

// quiet discards goka's informational lines, which would drown test output.
type quiet struct{}

func (quiet) Print(...any)          {}
func (quiet) Println(...any)        {}
func (quiet) Printf(string, ...any) {}
