package topology_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
)

// A rebalance that takes a partition whose batch is not written yet leaves
// its records uncommitted; the runner restarts that group instead of
// stopping, and once the store answers again every row is stored once.
func TestRunnerRestartsGroupAfterRevocation(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	storeA, storeB := newRowStore(), newRowStore()
	opts := topology.BatchOptions{MaxRows: 50, MaxWait: 10 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	a, b := newBatchTopo(storeA, opts), newBatchTopo(storeB, opts)

	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	m, err := promhooks.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	runA := runWith(t, a.t, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Hooks: []topology.Hook{m},
		Logger:         slog.New(slog.NewTextHandler(logs, nil)),
		RestartBackoff: topology.Backoff{Initial: time.Second, Max: 2 * time.Second}})
	lines(t, k, a.in.Name(), 10, 2)
	waitStored(t, storeA, 20)
	waitCommitted(t, a.t, k, "sink")

	// A's store hangs (and its probe says it is down, so that records
	// wait in place) with records pending on both partitions.
	blocked := make(chan struct{})
	storeA.set(func(s *rowStore) { s.block, s.blocked, s.down = make(chan struct{}), blocked, true })
	var kv []string
	for i := range 20 {
		kv = append(kv, fmt.Sprintf("k%d", i), fmt.Sprintf("y%d", i))
	}
	produce(t, k, a.in.Name(), kv...)
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("no write reached the store")
	}

	// B joins the group: A loses a partition with unwritten records.
	runB := startRunner(t, b.t, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	waitFor(t, 60*time.Second, func() error {
		select {
		case err := <-runA.done:
			t.Fatalf("runner A stopped after the rebalance: %v", err)
		default:
		}
		if err := runA.r.Ready(); err == nil || !strings.Contains(err.Error(), "restarting") {
			return fmt.Errorf("A's readiness: %v", err)
		}
		return nil
	})
	if n := counterValue(t, reg, "watershed_group_restarts_total"); n < 1 {
		t.Errorf("%v restarts counted", n)
	}
	if l := logs.String(); !strings.Contains(l, "restarting it") || !strings.Contains(l, "partition was revoked") {
		t.Errorf("no restart logged with the revocation:\n%s", l)
	}
	select {
	case err := <-runA.done:
		t.Fatalf("runner A stopped after the rebalance: %v", err)
	default:
	}

	storeA.set(func(s *rowStore) { s.block, s.down = nil, false })
	waitFor(t, 60*time.Second, func() error {
		rowsA, _ := storeA.stored()
		rowsB, _ := storeB.stored()
		for i := range 20 {
			r := fmt.Sprintf("y%d", i)
			if n := rowsA[r] + rowsB[r]; n != 1 {
				return fmt.Errorf("row %s stored %d times", r, n)
			}
		}
		return nil
	})
	waitCommitted(t, a.t, k, "sink")
	waitFor(t, 30*time.Second, runA.r.Ready)
	runB.stop(t)
	runA.stop(t)
	rowsA, _ := storeA.stored()
	rowsB, _ := storeB.stored()
	for i := range 20 {
		r := fmt.Sprintf("y%d", i)
		if n := rowsA[r] + rowsB[r]; n != 1 {
			t.Errorf("row %s stored %d times, want once", r, n)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// restartable is an embedded broker that can be stopped and started again
// on the same address and data folder.
type restartable struct {
	addr, dir string
	b         *embedded.Broker
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{addr: l.Addr().String(), dir: t.TempDir()}
	l.Close()
	r.start(t)
	t.Cleanup(func() {
		if r.b != nil {
			r.b.Close()
		}
	})
	return r
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	b, err := embedded.Start(embedded.Options{Addr: r.addr, DataDir: r.dir})
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
}

func (r *restartable) stop() {
	r.b.Close()
	r.b = nil
}

// outage stops the broker until the runner restarted a group several
// times (restarts that cannot reach the broker are retried too), checks
// that the runner neither stopped nor says it is ready, and starts the
// broker again.
func (r *restartable) outage(t *testing.T, run *running, reg prometheus.Gatherer) {
	t.Helper()
	r.stop()
	waitFor(t, 3*time.Minute, func() error {
		select {
		case err := <-run.done:
			t.Fatalf("runner stopped during the outage: %v", err)
		default:
		}
		if n := counterValue(t, reg, "watershed_group_restarts_total"); n < 6 {
			return fmt.Errorf("%v restarts", n)
		}
		return nil
	})
	if err := run.r.Ready(); err == nil {
		t.Error("ready while the broker is away")
	}
	r.start(t)
}

func outageOptions(t *testing.T, k topology.Kafka, reg prometheus.Registerer) topology.RunnerOptions {
	t.Helper()
	m, err := promhooks.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Hooks: []topology.Hook{m}, Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}}
}

// A batching group whose processor gives up while the broker is away is
// started again, and writes what arrives once the broker is back.
func TestRunnerOutlivesBrokerOutage(t *testing.T) {
	broker := startRestartable(t)
	k := topology.Kafka{Brokers: []string{broker.addr}}
	store := newRowStore()
	bt := newBatchTopo(store, topology.BatchOptions{MaxRows: 50, MaxWait: 10 * time.Millisecond, WriteTimeout: time.Second})
	reg := prometheus.NewRegistry()
	run := runWith(t, bt.t, outageOptions(t, k, reg))
	lines(t, k, bt.in.Name(), 10, 2)
	waitStored(t, store, 20)
	waitCommitted(t, bt.t, k, "sink")

	broker.outage(t, run, reg)
	produce(t, k, bt.in.Name(), "a", "z1 z2", "b", "z3")
	rows := waitStored(t, store, 23)
	waitCommitted(t, bt.t, k, "sink")
	waitFor(t, 60*time.Second, run.r.Ready)
	run.stop(t)
	for _, r := range []string{"z1", "z2", "z3"} {
		if rows[r] != 1 {
			t.Errorf("row %s stored %d times, want once", r, rows[r])
		}
	}
}

// A group with a table is restarted on the same table folder and goes on
// from the state it had before the outage.
func TestRunnerWithTableOutlivesBrokerOutage(t *testing.T) {
	broker := startRestartable(t)
	k := topology.Kafka{Brokers: []string{broker.addr}}
	c := newCounter(2)
	reg := prometheus.NewRegistry()
	run := runWith(t, c.t, outageOptions(t, k, reg))
	produce(t, k, c.in.Name(), "a", "1", "a", "2")
	readAll(t, k, c.out.Name(), 2, 30*time.Second)
	// Offsets commit on an interval: an outage before they do would replay
	// 1 and 2 (at least once), which says nothing about the table.
	waitCommitted(t, c.t, k, "count")

	broker.outage(t, run, reg)
	produce(t, k, c.in.Name(), "a", "4")
	waitFor(t, 60*time.Second, run.r.Ready)
	sums := readAll(t, k, c.out.Name(), 3, 60*time.Second)
	last := map[string]string{}
	for _, s := range sums {
		last[string(s.Key)] = string(s.Value)
	}
	run.stop(t)
	if last["a"] != "7" {
		t.Errorf("sum after the outage = %s, want 7 (the table's state kept)", last["a"])
	}
}

// A processor with the Stop policy still ends Run: it is not restarted.
func TestRunnerStopsOnStopPolicy(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	tp := topology.New("st")
	in := topology.NewStream(tp, "words", codecs.String{}, topology.External("test"), topology.WithPartitions(1))
	p := tp.Processor("strict", topology.OnFailure(topology.Stop))
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		if v == "bad" {
			return errors.New("cannot go on")
		}
		return nil
	})
	reg := prometheus.NewRegistry()
	m, err := promhooks.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	run := runWith(t, tp, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Hooks: []topology.Hook{m},
		Logger: slog.New(slog.DiscardHandler), RestartBackoff: topology.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}})
	produce(t, k, in.Name(), "a", "good", "b", "bad")
	select {
	case err := <-run.done:
		if err == nil || !strings.Contains(err.Error(), "cannot go on") {
			t.Errorf("run = %v, want the callback's error", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a processor with the Stop policy did not end Run")
	}
	if n := counterValue(t, reg, "watershed_group_restarts_total"); n != 0 {
		t.Errorf("%v restarts of a stopped processor", n)
	}
	if err := run.r.Ready(); err == nil || !strings.Contains(err.Error(), "strict stopped") || !strings.Contains(err.Error(), "cannot go on") {
		t.Errorf("ready after Run ended = %v, want the group stopped with its error", err)
	}
}

func TestRecoverable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		// Every error not on the deny-list is (see TestRecoverableDenyList).
		{errors.New("codec mismatch"), true},
		{fmt.Errorf("consuming: %w", sarama.ErrOutOfBrokers), true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{fmt.Errorf("Error creating the kafka client: %v", sarama.ErrOutOfBrokers), true},
		{fmt.Errorf("commit: %w", sarama.ErrRebalanceInProgress), true},
		{fmt.Errorf("commit: %w", sarama.ErrTopicAuthorizationFailed), false},
		// A producer that gave up on an emit, as goka reports it (%v) and
		// as the batch queues do (%w).
		{fmt.Errorf("could not commit message with key 'k3': %w", fmt.Errorf("error emitting to out: %v",
			&sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: "out"}, Err: sarama.ErrTopicAuthorizationFailed})), true},
		{fmt.Errorf("emit to dead letters: %w", &sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: "dl"}, Err: sarama.ErrNotEnoughReplicas}), true},
		// goka's texts seen in the cluster fault test, chains ended by %v.
		{fmt.Errorf("topology: processor g: %w", fmt.Errorf("Error creating topic manager: %v", fmt.Errorf("cannot connect to broker 127.0.0.1:19393: %v", io.EOF))), true},
		{fmt.Errorf("2 errors occurred:\n\t* Error closing consumer group: %v\n\t* error consuming from group consumer: %v", io.EOF, io.EOF), true},
		{fmt.Errorf("error processing message (partition=3): asynchronous error from callback: could not commit message with key 'k': %v",
			fmt.Errorf("%w the partition was revoked while retrying: n/3@89: outage", errors.New("topology: record left uncommitted"))), true},
		{errors.New("EOF handling is not supported by codec x"), true},
		// A table partition set up while its leader moved (a broker
		// SIGKILLed in the cluster fault test), through goka's %v.
		{fmt.Errorf("error setting up (partition=1): Setup failed. Cannot start processor for partition 1: %v",
			fmt.Errorf("Error getting oldest offset for topic/partition t/1: %v", sarama.ErrNotLeaderForPartition)), true},
	} {
		if got := topology.Recoverable(c.err); got != c.want {
			t.Errorf("Recoverable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// Run returns only after the batch queues ended, even when the store hangs
// while the runner stops.
func TestRunnerLeavesNoQueueGoroutines(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	store := newRowStore()
	bt := newBatchTopo(store, topology.BatchOptions{MaxRows: 50, MaxWait: 10 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	run := runTopo(t, bt.t, k, nil, nil)
	blocked := make(chan struct{})
	store.set(func(s *rowStore) { s.block, s.blocked, s.down = make(chan struct{}), blocked, true })
	lines(t, k, bt.in.Name(), 20, 2)
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("no write reached the store")
	}
	run.stop(t)
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*partQueue).run") {
			t.Errorf("a batch queue outlived Run:\n%s", g)
		}
	}
}
