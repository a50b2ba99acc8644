package topology

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/lovoo/goka"
)

// drainingGoka is a goka context whose session ended (a rebalance drains
// the partition): goka's Fail then records the error and returns instead
// of panicking, and the callback goes on.
type drainingGoka struct {
	fakeGoka
	failed error
}

func (f *drainingGoka) Fail(err error) { f.failed = err }

// A Stop-policy failure while the partition drains must not commit the
// record: goka's Fail returns there, and a callback that then returns
// normally would be committed.
func TestStopPolicyFailureDuringDrainIsNotCommitted(t *testing.T) {
	tp := New("sd")
	in := NewStream(tp, "in", stringCodec{}, External("test"))
	p := tp.Processor("strict", OnFailure(Stop))
	Consume(p, in, func(c *Context, key, v string) error { return errors.New("cannot go on") })
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &drainingGoka{fakeGoka: fakeGoka{ctx: ctx, offset: 3, done: make(chan error, 1)}}
	p.callback(p.inputs[0], nopObserver{}, &retryState{}, nil)(g, []byte("bad"))
	if g.failed == nil {
		t.Fatal("the Stop policy did not fail the processor")
	}
	select {
	case err := <-g.done:
		if err == nil {
			t.Fatal("the record's commit was settled without an error: it is committed")
		}
	default:
		t.Fatal("the callback returned without deferring the record's commit: goka commits it")
	}
}

// stringCodec is the identity codec of strings, for internal tests.
type stringCodec struct{}

func (stringCodec) Encode(s string) ([]byte, error) { return []byte(s), nil }
func (stringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// A record too large for a retry topic cannot succeed: it takes the
// permanent-failure path, so the Stop policy stops on it and a record of
// the dead-letter topic is skipped, never dead-lettered again.
func TestTooLargeRetryRecordFollowsThePolicy(t *testing.T) {
	up := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name   string
		policy FailurePolicy
		dlq    bool
		want   action
	}{
		{"stop", Stop, false, stop},
		{"dead-letter input", DeadLetter, true, skip},
		{"dead letter", DeadLetter, false, deadLetter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := New("tl")
			p := tp.Processor("big", OnFailure(tc.policy), WithRetryTopics(RetryPolicy{InPlace: 1, Probe: up}))
			v := p.decide(context.Background(), &retryState{}, nopObserver{}, failure{
				err: Transient(errors.New("busy")), origin: fromInput, local: 1, attempt: 1,
				deadLetterInput: tc.dlq, retryBytes: MaxRecordBytes + 1, what: stringer("rec")})
			if v.action != tc.want {
				t.Fatalf("action %d, want %d (%v)", v.action, tc.want, v.err)
			}
			if tc.want != stop && v.reason != ReasonTooLarge {
				t.Fatalf("reason %q, want %q", v.reason, ReasonTooLarge)
			}
		})
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// A retried record naming an origin that is not an input cannot succeed:
// under the Stop policy the retry group stops on it instead of
// dead-lettering it, and the record stays uncommitted.
func TestBadRetryRecordFollowsStopPolicy(t *testing.T) {
	tp := New("br")
	in := NewStream(tp, "in", stringCodec{}, External("test"))
	p := tp.Processor("strict", OnFailure(Stop), WithRetryTopics(RetryPolicy{InPlace: 1}))
	Consume(p, in, func(c *Context, key, v string) error { return nil })
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &drainingGoka{fakeGoka: fakeGoka{ctx: ctx, offset: 3, done: make(chan error, 1)}}
	p.retry.companion.retryCallback(0, nopObserver{}, &retryState{}, nil)(g, []byte("orphan"))
	if !errors.Is(g.failed, ErrStopPolicy) {
		t.Fatalf("the retry group did not stop under the Stop policy: %v", g.failed)
	}
	select {
	case err := <-g.done:
		if err == nil {
			t.Fatal("the record's commit was settled without an error: it is committed")
		}
	default:
		t.Fatal("the callback returned without deferring the record's commit: goka commits it")
	}
}

// emitCountingGoka is a draining goka context that counts its emits.
type emitCountingGoka struct {
	drainingGoka
	emits int
}

func (f *emitCountingGoka) Emit(goka.Stream, string, any, ...goka.ContextOption) { f.emits++ }

// A dead letter whose envelope fails to encode fails the processor; while
// the partition drains (goka's Fail returns) nothing is emitted in its
// place and the record stays uncommitted.
func TestDeadLetterEncodeFailureDuringDrainIsNotCommitted(t *testing.T) {
	tp := New("de")
	p := tp.Processor("p")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &emitCountingGoka{drainingGoka: drainingGoka{fakeGoka: fakeGoka{ctx: ctx, offset: 3, done: make(chan error, 1)}}}
	c := &Context{g: g, proc: p, raw: []byte("v")}
	c.DeadLetter("bad", errors.New("bad"), []byte("v"))
	c.flush(func(*Context, string, error, []byte) ([]byte, error) { return nil, errors.New("cannot encode") })
	if g.failed == nil {
		t.Fatal("the encode failure did not fail the processor")
	}
	if g.emits != 0 {
		t.Fatalf("%d records emitted in place of the dead letter", g.emits)
	}
	select {
	case err := <-g.done:
		if err == nil {
			t.Fatal("the record's commit was settled without an error: it is committed")
		}
	default:
		t.Fatal("flush returned without deferring the record's commit: goka commits it")
	}
}

// topicGoka is a goka context that records the topics of its emits.
type topicGoka struct {
	fakeGoka
	topics []string
}

func (f *topicGoka) Emit(s goka.Stream, _ string, _ any, _ ...goka.ContextOption) {
	f.topics = append(f.topics, string(s))
}

// An output refused as too large fails the record even when the callback
// ignores the refusal and returns nil: the input is dead-lettered, not
// committed without its output.
func TestIgnoredTooLargeOutputFailsTheRecord(t *testing.T) {
	tp := New("ig")
	in := NewStream(tp, "in", stringCodec{}, External("test"))
	out := NewStream(tp, "out", stringCodec{})
	p := tp.Processor("careless")
	o := Produce(p, out)
	Consume(p, in, func(c *Context, key, v string) error {
		_ = o.Emit(c, key, string(make([]byte, MaxRecordBytes+1)))
		return nil
	})
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	g := &topicGoka{fakeGoka: fakeGoka{ctx: context.Background(), offset: 3, done: make(chan error, 1)}}
	p.callback(p.inputs[0], nopObserver{}, &retryState{}, nil)(g, []byte("v"))
	if len(g.topics) != 1 || g.topics[0] != tp.DeadLetterTopic() {
		t.Fatalf("emitted to %v, want only the dead-letter topic %q", g.topics, tp.DeadLetterTopic())
	}
}

// retriedGoka is a record of a retry topic whose origin is in.
type retriedGoka struct {
	topicGoka
	origin string
}

func (f *retriedGoka) Headers() goka.Headers {
	return goka.Headers{HeaderRetryOrigin: []byte(f.origin), HeaderAttempts: []byte("1")}
}

// The retry group fails a retried record whose output was refused as well.
func TestIgnoredTooLargeOutputFailsTheRetriedRecord(t *testing.T) {
	tp := New("ir")
	in := NewStream(tp, "in", stringCodec{}, External("test"))
	out := NewStream(tp, "out", stringCodec{})
	p := tp.Processor("careless", WithRetryTopics(RetryPolicy{InPlace: 1}))
	o := Produce(p, out)
	Consume(p, in, func(c *Context, key, v string) error {
		_ = o.Emit(c, key, string(make([]byte, MaxRecordBytes+1)))
		return nil
	})
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	g := &retriedGoka{topicGoka: topicGoka{fakeGoka: fakeGoka{ctx: context.Background(), offset: 3, done: make(chan error, 1)}}, origin: in.Name()}
	p.retry.companion.retryCallback(0, nopObserver{}, &retryState{}, nil)(g, []byte("v"))
	if len(g.topics) != 1 || g.topics[0] != tp.DeadLetterTopic() {
		t.Fatalf("emitted to %v, want only the dead-letter topic %q", g.topics, tp.DeadLetterTopic())
	}
}

// Once a retried record of a delay queue settles with an error (here the
// Stop policy), the later records of the queue inherit it: they are not
// handled, so their outputs are not sent ahead of the record that stopped.
func TestDelayQueueLaterRecordsInheritAFailure(t *testing.T) {
	tp := New("dq")
	in := NewStream(tp, "in", stringCodec{}, External("test"))
	p := tp.Processor("strict", OnFailure(Stop), WithRetryTopics(RetryPolicy{InPlace: 1}))
	var handled sync.Map
	Consume(p, in, func(c *Context, key, v string) error {
		handled.Store(v, true)
		if v == "bad" {
			return errors.New("cannot go on")
		}
		return nil
	})
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running sync.WaitGroup
	comp := p.retry.companion
	rt := newRetryRuntime(comp, nopObserver{}, &retryState{stop: context.Background()}, nil, &running)
	g := &fakeGoka{ctx: ctx, offset: 3}
	q := rt.queue(g)
	var done [2]chan error
	for i, v := range []string{"bad", "good"} {
		done[i] = make(chan error, 1)
		c := &Context{g: g, proc: comp, in: p.inputs[0], raw: []byte(v), obs: nopObserver{}, detached: true}
		q.enqueue(&delayed{c: c, done: func(err error) { done[i] <- err }})
	}
	for i, name := range []string{"bad", "good"} {
		if err := <-done[i]; err == nil {
			t.Errorf("record %q settled without an error: it commits after the stop", name)
		}
	}
	if _, ok := handled.Load("good"); ok {
		t.Error("the record after the stop was handled (its outputs would be sent)")
	}
	cancel()
	running.Wait()
}
