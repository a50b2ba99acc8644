package topology

import (
	"context"
	"errors"
	"testing"
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
