package topology

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"
)

type gokaContext = goka.Context

// fakeGoka is the part of a goka context a partition queue uses.
type fakeGoka struct {
	gokaContext
	ctx    context.Context
	offset int64
	done   chan error
}

func (f *fakeGoka) Context() context.Context                             { return f.ctx }
func (f *fakeGoka) Topic() goka.Stream                                   { return "lines" }
func (f *fakeGoka) Partition() int32                                     { return 0 }
func (f *fakeGoka) Offset() int64                                        { return f.offset }
func (f *fakeGoka) Key() string                                          { return "k" }
func (f *fakeGoka) Timestamp() time.Time                                 { return time.Time{} }
func (f *fakeGoka) Headers() goka.Headers                                { return nil }
func (f *fakeGoka) DeferCommit() func(error)                             { return func(err error) { f.done <- err } }
func (f *fakeGoka) Emit(goka.Stream, string, any, ...goka.ContextOption) {}

// batchRuntimeFor builds the batch runtime of a sink-like processor
// writing to write.
func batchRuntimeFor(t *testing.T, write func(ctx context.Context, rows []string) error, running *sync.WaitGroup) (*Processor, *batchRuntime) {
	t.Helper()
	tp := New("bi")
	p := tp.Processor("sink")
	Batch(p, BatchOptions{MaxWait: time.Millisecond, WriteTimeout: 100 * time.Millisecond}, write)
	return p, newBatchRuntime(p, nopObserver{}, &retryState{stop: context.Background()}, nil, running)
}

// A record goka hands over after the queue flushed its last batch is
// written inline and committed: everything before it is settled.
func TestLateRecordAfterRevocationIsWritten(t *testing.T) {
	var mu sync.Mutex
	var stored []string
	write := func(ctx context.Context, rows []string) error {
		mu.Lock()
		defer mu.Unlock()
		stored = append(stored, rows...)
		return nil
	}
	p, rt := batchRuntimeFor(t, write, nil)
	sess, end := context.WithCancel(context.Background())
	g := &fakeGoka{ctx: sess, offset: 7, done: make(chan error, 1)}
	q := rt.queue(g)
	end()
	rt.running.Wait() // the queue ran its final flush and closed
	if !q.closed {
		t.Fatal("queue not closed after its session ended")
	}
	c := &Context{g: g, proc: p, rows: []string{"late"}, nrows: 1}
	q.enqueue(c, time.Time{}, nil)
	if err := <-g.done; err != nil {
		t.Fatalf("late record settled with %v, want a commit", err)
	}
	if len(stored) != 1 || stored[0] != "late" {
		t.Errorf("stored %v, want the late record's row", stored)
	}
}

// A late record whose write fails stays uncommitted, with an error that
// says the partition was revoked.
func TestLateRecordFailingWriteStaysUncommitted(t *testing.T) {
	write := func(ctx context.Context, rows []string) error { return Transient(context.DeadlineExceeded) }
	p, rt := batchRuntimeFor(t, write, nil)
	sess, end := context.WithCancel(context.Background())
	g := &fakeGoka{ctx: sess, offset: 9, done: make(chan error, 1)}
	q := rt.queue(g)
	end()
	rt.running.Wait()
	q.enqueue(&Context{g: g, proc: p, rows: []string{"late"}, nrows: 1}, time.Time{}, nil)
	err := <-g.done
	if !IsAbandoned(err) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("late record settled with %v, want it abandoned as revoked", err)
	}
}

// The queue goroutines end with their session, even while a write hangs:
// once the session is over the batch is not split into more writes.
func TestQueueGoroutinesEndWithSession(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	writes := 0
	var mu sync.Mutex
	write := func(ctx context.Context, rows []string) error {
		mu.Lock()
		writes++
		mu.Unlock()
		select {
		case <-hang:
		case <-ctx.Done():
		}
		return Transient(context.DeadlineExceeded)
	}
	var running sync.WaitGroup
	p, rt := batchRuntimeFor(t, write, &running)
	sess, end := context.WithCancel(context.Background())
	g := &fakeGoka{ctx: sess, done: make(chan error, 8)}
	q := rt.queue(g)
	for i := range 4 {
		g.offset = int64(i)
		q.enqueue(&Context{g: g, proc: p, rows: []string{"r"}, nrows: 1}, time.Time{}, nil)
	}
	for {
		mu.Lock()
		n := writes
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	end()
	running.Wait()
	for range 4 {
		if err := <-g.done; !IsAbandoned(err) {
			t.Errorf("record settled with %v, want it left uncommitted", err)
		}
	}
	mu.Lock()
	if writes != 1 {
		t.Errorf("%d writes after the session ended, want the one merged write", writes)
	}
	mu.Unlock()
	if stacks := queueGoroutines(); stacks != "" {
		t.Errorf("queue goroutines left:\n%s", stacks)
	}
}

// queueGoroutines returns the stacks of running partition queues.
func queueGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*partQueue).run") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
