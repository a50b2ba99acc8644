package topology_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
)

var errDown = errors.New("store down")

// rowStore is a store of string rows for the batching tests: it counts its
// writes and each row's copies, and can block, be down, or refuse rows.
type rowStore struct {
	mu     sync.Mutex
	rows   map[string]int
	writes int
	// block, when set, makes writes wait until it is closed or their
	// context ends.
	block chan struct{}
	// blocked is closed by the first write that waits on block.
	blocked chan struct{}
	down    bool
	// refuse fails for good every write holding the row; slow fails it
	// transiently while the store is up.
	refuse, slow string
}

func newRowStore() *rowStore { return &rowStore{rows: map[string]int{}} }

func (s *rowStore) write(ctx context.Context, rows []string) error {
	s.mu.Lock()
	block := s.block
	if block != nil && s.blocked != nil {
		close(s.blocked)
		s.blocked = nil
	}
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return topology.Transient(ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return topology.Transient(errDown)
	}
	for _, r := range rows {
		switch r {
		case s.refuse:
			return topology.Reject("refused", fmt.Errorf("row %q", r))
		case s.slow:
			return topology.Transient(fmt.Errorf("row %q times out", r))
		}
	}
	s.writes++
	for _, r := range rows {
		s.rows[r]++
	}
	return nil
}

func (s *rowStore) ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errDown
	}
	return nil
}

func (s *rowStore) set(fn func(s *rowStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// stored returns the stored rows and the number of writes.
func (s *rowStore) stored() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.rows))
	for k, v := range s.rows {
		out[k] = v
	}
	return out, s.writes
}

// batchTopo is a sink-like group: each record holds space-separated rows,
// written in batches to a rowStore.
type batchTopo struct {
	t  *topology.Topology
	in topology.Stream[string]
}

func newBatchTopo(store *rowStore, opts topology.BatchOptions) *batchTopo {
	b := &batchTopo{t: topology.New("bt")}
	b.in = topology.NewStream(b.t, "lines", codecs.String{}, topology.External("test"), topology.WithPartitions(2))
	p := b.t.Processor("sink",
		topology.RetryBackoff(topology.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}),
		topology.WithRetryTopics(topology.RetryPolicy{InPlace: 2, Delays: []time.Duration{time.Hour}, Probe: store.ping}))
	batch := topology.Batch(p, opts, store.write)
	topology.Consume(p, b.in, func(c *topology.Context, key, v string) error {
		return batch.Add(c, strings.Fields(v))
	})
	return b
}

type running struct {
	r      *topology.Runner
	cancel context.CancelFunc
	done   chan error
}

func runTopo(t *testing.T, tp *topology.Topology, k topology.Kafka, groups []string, reg *prometheus.Registry) *running {
	t.Helper()
	opts := topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Groups: groups, Logger: slog.New(slog.DiscardHandler)}
	if reg != nil {
		m, err := promhooks.New(reg)
		if err != nil {
			t.Fatal(err)
		}
		opts.Hooks = []topology.Hook{m}
	}
	return runWith(t, tp, opts)
}

// runWith starts a runner of tp with opts and waits until it is ready.
func runWith(t *testing.T, tp *topology.Topology, opts topology.RunnerOptions) *running {
	t.Helper()
	run := startRunner(t, tp, opts)
	waitFor(t, 60*time.Second, run.r.Ready)
	return run
}

// startRunner starts a runner of tp with opts.
func startRunner(t *testing.T, tp *topology.Topology, opts topology.RunnerOptions) *running {
	t.Helper()
	r, err := topology.NewRunner(build(t, tp), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	t.Cleanup(cancel)
	return run
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// lines produces n records of rows per record, rows named "r<i>".
func lines(t *testing.T, k topology.Kafka, topic string, n, rows int) {
	t.Helper()
	var kv []string
	for i := range n {
		var rs []string
		for j := range rows {
			rs = append(rs, fmt.Sprintf("r%d", i*rows+j))
		}
		kv = append(kv, fmt.Sprintf("k%d", i%7), strings.Join(rs, " "))
	}
	produce(t, k, topic, kv...)
}

func lagOf(t *testing.T, tp *topology.Topology, k topology.Kafka, group string) int64 {
	t.Helper()
	lags, err := build(t, tp).Lag(context.Background(), k, []string{group})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range lags {
		n += l.Lag
	}
	return n
}

// waitCommitted waits until group committed every record.
func waitCommitted(t *testing.T, tp *topology.Topology, k topology.Kafka, group string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		if n := lagOf(t, tp, k, group); n != 0 {
			return fmt.Errorf("lag %d", n)
		}
		return nil
	})
}

func waitStored(t *testing.T, s *rowStore, n int) map[string]int {
	t.Helper()
	var rows map[string]int
	// A bound, not a speed: on a loaded 2-core machine a rebalance during
	// a retry abandons the record and the group restarts with backoff.
	waitFor(t, 90*time.Second, func() error {
		rows, _ = s.stored()
		if len(rows) < n {
			return fmt.Errorf("%d of %d rows stored", len(rows), n)
		}
		return nil
	})
	return rows
}

// Rows of many records reach the store in fewer writes than records, and
// every record commits.
func TestBatcherMergesWrites(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	store := newRowStore()
	// Records arrive one by one from a synchronous producer: a long wait
	// gathers many.
	bt := newBatchTopo(store, topology.BatchOptions{MaxRows: 60, MaxWait: 500 * time.Millisecond})
	reg := prometheus.NewRegistry()
	run := runTopo(t, bt.t, k, nil, reg)
	const records, perRecord = 200, 3
	lines(t, k, bt.in.Name(), records, perRecord)
	rows := waitStored(t, store, records*perRecord)
	waitCommitted(t, bt.t, k, "sink")
	run.stop(t)
	_, writes := store.stored()
	if writes >= records/2 {
		t.Errorf("%d writes for %d records: not batched", writes, records)
	}
	if len(rows) != records*perRecord {
		t.Errorf("stored %d rows, want %d", len(rows), records*perRecord)
	}
	if got := counterValue(t, reg, "watershed_processor_records_consumed_total"); got != records {
		t.Errorf("consumed = %v, want %d", got, records)
	}
	if got := counterValue(t, reg, "watershed_processor_batch_rows"); got != records*perRecord {
		t.Errorf("batch rows metric sums to %v, want %d", got, records*perRecord)
	}
}

// A record is committed only after its write: a runner stopped while the
// store hangs leaves its records uncommitted, and the next run writes them.
func TestBatcherCommitsOnlyWrittenRecords(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	store := newRowStore()
	opts := topology.BatchOptions{MaxRows: 50, MaxWait: 10 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}
	bt := newBatchTopo(store, opts)
	run := runTopo(t, bt.t, k, nil, nil)
	lines(t, k, bt.in.Name(), 10, 2)
	waitStored(t, store, 20)
	waitCommitted(t, bt.t, k, "sink")

	// The store hangs from now on (and its probe says it is down, so that
	// the records wait in place).
	blocked := make(chan struct{})
	store.set(func(s *rowStore) { s.block, s.blocked, s.down = make(chan struct{}), blocked, true })
	produce(t, k, bt.in.Name(), "a", "x1 x2", "b", "x3", "c", "x4 x5 x6")
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("no write reached the store")
	}
	if n := lagOf(t, bt.t, k, "sink"); n != 3 {
		t.Errorf("lag while the write hangs = %d, want 3 (records committed before their write)", n)
	}
	run.stop(t) // the last flush times out: exit without error, nothing committed
	if n := lagOf(t, bt.t, k, "sink"); n != 3 {
		t.Fatalf("lag after stopping = %d, want 3", n)
	}
	if rows, _ := store.stored(); rows["x1"] != 0 {
		t.Fatalf("a hung write was stored: %v", rows)
	}

	store.set(func(s *rowStore) { s.block, s.down = nil, false })
	run = runTopo(t, bt.t, k, nil, nil)
	rows := waitStored(t, store, 26)
	waitCommitted(t, bt.t, k, "sink")
	run.stop(t)
	for _, r := range []string{"x1", "x2", "x3", "x4", "x5", "x6"} {
		if rows[r] != 1 {
			t.Errorf("row %s stored %d times after the restart, want 1", r, rows[r])
		}
	}
}

// While the store is down the partition pauses in place (no retry topic,
// no dead letter) and everything is written once it is back.
func TestBatcherPausesDuringOutage(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	store := newRowStore()
	store.down = true
	bt := newBatchTopo(store, topology.BatchOptions{MaxRows: 10, MaxWait: 5 * time.Millisecond, MaxPending: 4})
	reg := prometheus.NewRegistry()
	run := runTopo(t, bt.t, k, nil, reg)
	lines(t, k, bt.in.Name(), 40, 2)
	waitFor(t, 30*time.Second, func() error {
		if n := counterValue(t, reg, "watershed_processor_retries_total"); n < 5 {
			return fmt.Errorf("%v retries", n)
		}
		return nil
	})
	if n := lagOf(t, bt.t, k, "sink"); n != 40 {
		t.Errorf("lag during the outage = %d, want 40", n)
	}
	store.set(func(s *rowStore) { s.down = false })
	rows := waitStored(t, store, 80)
	waitCommitted(t, bt.t, k, "sink")
	run.stop(t)
	if len(rows) != 80 {
		t.Errorf("stored %d rows, want 80", len(rows))
	}
	if n := lagOf(t, bt.t, k, "sink-retry"); n != 0 {
		t.Errorf("%d records moved to the retry topic during an outage", n)
	}
	if n := counterValue(t, reg, "watershed_processor_dead_letters_total"); n != 0 {
		t.Errorf("%v dead letters during an outage", n)
	}
}

// A record the store refuses goes to the dead-letter topic with its reason
// and one that keeps failing while the store is up goes to the retry
// topic, while their neighbours in the same batch are stored.
func TestBatcherSplitsFailedBatch(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	store := newRowStore()
	store.refuse, store.slow = "bad", "slow"
	// A long wait puts every record in one batch.
	bt := newBatchTopo(store, topology.BatchOptions{MaxRows: 1000, MaxWait: 300 * time.Millisecond})
	run := runTopo(t, bt.t, k, []string{"sink"}, nil)
	produce(t, k, bt.in.Name(), "a", "a1 a2", "b", "b1 bad", "a", "a3", "c", "slow c1", "b", "b2")
	rows := waitStored(t, store, 4)
	dead := readAll(t, k, bt.t.DeadLetterTopic(), 1, 30*time.Second)
	retried := readAll(t, k, "sink-retry-1", 1, 30*time.Second)
	waitCommitted(t, bt.t, k, "sink")
	run.stop(t)
	for _, r := range []string{"a1", "a2", "a3", "b2"} {
		if rows[r] == 0 {
			t.Errorf("neighbour row %s not stored: %v", r, rows)
		}
	}
	if rows["b1"] != 0 || rows["c1"] != 0 {
		t.Errorf("rows of failed records stored: %v", rows)
	}
	env, err := records.EnvelopeCodec{}.Decode(dead[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if env.Reason != "refused" || string(env.Value) != "b1 bad" || string(env.Key) != "b" || env.Stage != "sink" || env.Topic != bt.in.Name() {
		t.Errorf("dead letter = %+v", env)
	}
	if string(retried[0].Value) != "slow c1" || string(retried[0].Key) != "c" {
		t.Errorf("retried record = %s=%s", retried[0].Key, retried[0].Value)
	}
	hs := map[string]string{}
	for _, h := range retried[0].Headers {
		hs[string(h.Key)] = string(h.Value)
	}
	if hs[topology.HeaderRetryOrigin] != bt.in.Name() || hs[topology.HeaderAttempts] != "2" {
		t.Errorf("retry headers = %v", hs)
	}
}

// Two handlers of one stream (Consume twice) each add rows of the record:
// under the Runner both reach the store, and the record commits.
func TestBatcherTakesRowsOfEveryHandler(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	store := newRowStore()
	tp := topology.New("bt2")
	in := topology.NewStream(tp, "lines", codecs.String{}, topology.External("test"), topology.WithPartitions(1))
	p := tp.Processor("sink")
	batch := topology.Batch(p, topology.BatchOptions{MaxRows: 10, MaxWait: 50 * time.Millisecond}, store.write)
	topology.Consume(p, in, func(c *topology.Context, _, v string) error { return batch.Add(c, []string{v + "-a"}) })
	topology.Consume(p, in, func(c *topology.Context, _, v string) error { return batch.Add(c, []string{v + "-b"}) })
	run := runTopo(t, tp, k, nil, nil)
	produce(t, k, in.Name(), "k", "r1", "k", "r2")
	rows := waitStored(t, store, 4)
	waitCommitted(t, tp, k, "sink")
	run.stop(t)
	for _, r := range []string{"r1-a", "r1-b", "r2-a", "r2-b"} {
		if rows[r] != 1 {
			t.Errorf("row %s stored %d times, want once (rows %v)", r, rows[r], rows)
		}
	}
}
