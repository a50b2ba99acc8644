package topology

import (
	"context"
	"fmt"
	"sync"

	"github.com/lovoo/goka"
)

// rawCodec passes record bytes through goka untouched. Every goka edge of a
// topology uses it: typed encoding happens in the framework, where a failure
// is an error to handle instead of a panic that stops the processor.
type rawCodec struct{}

func (rawCodec) Encode(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("topology: raw codec got %T", v)
	}
}

func (rawCodec) Decode(b []byte) (any, error) {
	if b == nil {
		return nil, nil
	}
	// goka reuses no buffers here, but a table value may be kept by the
	// caller past the storage's next write: copy.
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// runEnv is what a Runner gives the processors it builds; the zero value
// is for test drivers and tools.
type runEnv struct {
	// stop is the Runner's context: done when the whole processor stops.
	stop context.Context
	// queues counts the goroutines of the batch queues, so that the
	// Runner closes the batch producers only after they ended.
	queues *sync.WaitGroup
	// clock tells wall-clock time (nil: the system's).
	clock Clock
	// time is the group's framework-owned state (nil: in memory, for
	// test drivers; see state.go).
	time *timeRuntime
}

// groupGraph builds the goka group graph of p. The callbacks report to obs.
// With a producer, a processor with a Batcher batches its writes (see
// Batcher); without one, its callbacks write at once.
func (p *Processor) groupGraph(obs observer, prod goka.Producer, env runEnv) *goka.GroupGraph {
	var edges []goka.Edge
	state := &retryState{stop: env.stop, clock: newStreamClock(env.clock)}
	state.clock.rt = env.time.attach(state.clock)
	if env.time == nil {
		state.clock.rt = p.time.newRuntime("", nil, env.clock, nil)
	}
	var rt *batchRuntime
	if p.batch != nil && p.retryOf == nil && prod != nil {
		rt = newBatchRuntime(p, obs, state, prod, env.queues)
	}
	if main := p.retryOf; main != nil {
		var rrt *retryRuntime
		if prod != nil {
			rrt = newRetryRuntime(p, obs, state, prod, env.queues)
		}
		for i, tier := range main.retry.tiers {
			edges = append(edges, goka.Input(goka.Stream(tier.name), rawCodec{}, ordered(p.retryCallback(i, obs, state, rrt))))
		}
	} else {
		for _, in := range p.inputs {
			edges = append(edges, goka.Input(goka.Stream(in.topic.name), rawCodec{}, ordered(p.callback(in, obs, state, rt))))
		}
	}
	if p.loop != nil {
		edges = append(edges, goka.Loop(rawCodec{}, ordered(p.callback(p.loop, obs, state, nil))))
	}
	if p.retryOf == nil {
		edges = append(edges, p.time.edges(func(in *inputDecl) goka.ProcessCallback { return ordered(p.callback(in, obs, state, rt)) })...)
	}
	for _, o := range p.outputs {
		edges = append(edges, goka.Output(goka.Stream(o.name), rawCodec{}))
	}
	edges = append(edges, goka.Output(goka.Stream(p.t.deadLetter), rawCodec{}))
	if p.table != nil {
		edges = append(edges, goka.Persist(rawCodec{}))
	}
	for _, l := range p.lookups {
		edges = append(edges, goka.Lookup(goka.Table(l.name), rawCodec{}))
	}
	for _, j := range p.joins {
		edges = append(edges, goka.Join(goka.Table(j.name), rawCodec{}))
	}
	return goka.DefineGroup(goka.Group(p.group), edges...)
}

// gokaBinding builds the goka processor of p outside a Runner.
type gokaBinding struct{ p *Processor }

// NewProcessor builds the goka processor of the group with the given goka
// options and no hooks (goka.WithTester for a test driver).
func (b gokaBinding) NewProcessor(brokers []string, opts ...goka.ProcessorOption) (*goka.Processor, error) {
	p := b.p
	gp, err := goka.NewProcessor(brokers, p.groupGraph(nopObserver{}, nil, runEnv{}), append([]goka.ProcessorOption{goka.WithHasher(Hasher)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("topology: processor %s: %w", p.group, err)
	}
	return gp, nil
}
