package processors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// refusingStore is a memStore that counts its writes and refuses for good
// every write holding a reading of one device (none when 0).
type refusingStore struct {
	*memStore
	device uint64
	writes int
}

func (s *refusingStore) Write(ctx context.Context, rs []records.Reading) error {
	s.mu.Lock()
	for _, r := range rs {
		if r.DeviceID == s.device {
			s.mu.Unlock()
			return errors.New("row rejected by the schema")
		}
	}
	s.writes++
	s.mu.Unlock()
	return s.memStore.Write(ctx, rs)
}

// On a real broker the sink merges the records of a partition into few
// writes; a record the store refuses goes to the dead-letter topic with
// reason sink_refused while the rows of its batch's other records are
// stored.
func TestSinkBatchesAndDeadLettersRefusedRecords(t *testing.T) {
	store := &refusingStore{memStore: newMemStore()}
	var audit lockedBuffer
	k, p, r, ctx := runSink(t, store, processors.Config{Partitions: 1, SinkAudit: sinks.NewAudit(&audit),
		SinkBatch: topology.BatchOptions{MaxWait: time.Second}}, processors.GroupSink)

	// Twenty packages of devices 1..20 (two readings each), sent at once,
	// take few writes.
	sendPackages(t, k, p, 1, 20)
	waitCommitted(t, ctx, r)
	store.mu.Lock()
	writes := store.writes
	store.mu.Unlock()
	if writes >= 10 {
		t.Errorf("%d writes for 20 records: not batched", writes)
	}
	// Device 33 is refused in a batch with its neighbours 31..36.
	store.mu.Lock()
	store.device = 33
	store.mu.Unlock()
	sendPackages(t, k, p, 31, 36)
	waitCommitted(t, ctx, r)
	for _, d := range []uint64{1, 20, 31, 32, 33, 34, 35, 36} {
		rows, _ := store.Readings(ctx, sinks.Query{DeviceID: d})
		if want := 2 * btoi(d != 33); len(rows) != want {
			t.Errorf("device %d: %d rows stored, want %d", d, len(rows), want)
		}
	}
	// The envelope was acknowledged before its record committed.
	dead := deadLetters(t, ctx, k, p)
	if len(dead) != 1 || dead[0].Reason != "sink_refused" || dead[0].Stage != processors.GroupSink || string(dead[0].Key) != "33" {
		t.Errorf("dead letters = %+v", dead)
	}
	// The audit saw every record handed over and logged only the writes
	// the store acknowledged: device 33's readings in none of them.
	store.mu.Lock()
	writes = store.writes
	store.mu.Unlock()
	delivered, wrote := 0, 0
	written := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
		f := strings.Fields(line)
		switch f[0] {
		case "d":
			delivered++
		case "w":
			wrote++
			for _, id := range f[1:] {
				written[strings.SplitN(id, ":", 2)[0]]++
			}
		}
	}
	if delivered < 26 || wrote != writes {
		t.Errorf("audit: %d records handed over (want at least 26), %d writes logged (store acknowledged %d)", delivered, wrote, writes)
	}
	for _, d := range []string{"1", "20", "31", "36"} {
		if written[d] < 2 {
			t.Errorf("audit: device %s's readings written %d times, want 2 or more", d, written[d])
		}
	}
	if written["33"] != 0 {
		t.Errorf("audit: refused device 33 logged as written %d times", written["33"])
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sendPackages sends one package of two readings for each device from..to
// and waits until the broker acknowledged them all. It takes the
// acknowledgements while it sends: the producer hands them over one by one
// (sarama's Successes channel is unbuffered), so a sender that reads them
// only after its last send blocks the producer, and itself, as soon as the
// producer's buffers are full (with small batches, under load).
func sendPackages(t *testing.T, k topology.Kafka, p *processors.Pipeline, from, to uint64) {
	t.Helper()
	prod, err := sarama.NewAsyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	var next *sarama.ProducerMessage
	sent, acked := 0, 0
	for d := from; d <= to || acked < sent; {
		var input chan<- *sarama.ProducerMessage // nil (no send) once all are sent
		if d <= to {
			input = prod.Input()
			if next == nil {
				next = packageMessage(t, p, d)
			}
		}
		select {
		case input <- next:
			next = nil
			d++
			sent++
		case <-prod.Successes():
			acked++
		case err := <-prod.Errors():
			t.Fatal(err)
		case <-deadline.C:
			t.Fatalf("%d of %d packages sent, %d acknowledged after 60s", sent, to-from+1, acked)
		}
	}
}

// sendPackages takes the producer's acknowledgements while it sends: with
// batches of about one message (a flush interval of a microsecond), many
// more packages than the producer buffers are sent without the helper
// blocking on itself.
func TestSendPackagesInSmallBatches(t *testing.T) {
	b := startBroker(t)
	k := topology.Kafka{Brokers: b.Addrs(), FlushInterval: time.Microsecond}
	p := processors.New(processors.Config{Partitions: 1})
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	const packages = 800
	sendPackages(t, k, p, 1, packages)
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(p.Normalized.Name())
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	for _, part := range parts {
		n, err := client.GetOffset(p.Normalized.Name(), part, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		end += n
	}
	if end != packages {
		t.Errorf("%s holds %d records, want %d", p.Normalized.Name(), end, packages)
	}
}

// packageMessage is the message of device d's package of two readings.
func packageMessage(t *testing.T, p *processors.Pipeline, d uint64) *sarama.ProducerMessage {
	t.Helper()
	rs := records.Readings{DeviceID: d, Items: []records.Reading{
		{DeviceID: d, TimeMs: baseTime, ContentCRC: 1}, {DeviceID: d, TimeMs: baseTime + 1, ContentCRC: 2}}}
	v, err := p.Normalized.Codec().Encode(rs)
	if err != nil {
		t.Fatal(err)
	}
	return &sarama.ProducerMessage{Topic: p.Normalized.Name(), Key: sarama.StringEncoder(strconv.FormatUint(d, 10)), Value: sarama.ByteEncoder(v)}
}

// waitCommitted waits until the runner's groups committed every record.
func waitCommitted(t *testing.T, ctx context.Context, r *topology.Runner) {
	t.Helper()
	waitNoLag(t, func() ([]topology.PartitionLag, error) { return r.Lag(ctx) })
}

// waitNoLag waits until every lag lags reads is zero.
func waitNoLag(t *testing.T, lags func() ([]topology.PartitionLag, error)) {
	t.Helper()
	waitUntil(t, func() error {
		lags, err := lags()
		if err != nil {
			return err
		}
		for _, l := range lags {
			if l.Lag != 0 {
				return fmt.Errorf("lag %+v", l)
			}
		}
		return nil
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func waitUntil(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopped returns the error of a run that was told to stop (done receives
// it), or fails the test with every goroutine's stack when the run has not
// ended within a minute: a stop that hangs fails its test instead of
// holding the package until the test binary's timeout.
func stopped(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		buf := make([]byte, 4<<20)
		t.Fatalf("the run did not stop within a minute; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		return nil
	}
}

// partialOutageStore is a memStore that, while down, fails every write as
// the Cassandra store does when a replica of a replicated keyspace is down
// (LOCAL_QUORUM cannot be met), while its ping still answers.
type partialOutageStore struct {
	*memStore
	down   atomic.Bool
	failed atomic.Int64
}

func (s *partialOutageStore) Write(ctx context.Context, rs []records.Reading) error {
	if s.down.Load() {
		s.failed.Add(1)
		unavailable := &gocql.RequestErrUnavailable{Consistency: gocql.LocalQuorum, Required: 2, Alive: 1}
		return fmt.Errorf("cassandra: write %d readings: %w", len(rs), cassandra.Classify(unavailable))
	}
	return s.memStore.Write(ctx, rs)
}

// Ping answers, as `SELECT release_version FROM system.local` does on the
// node still up.
func (s *partialOutageStore) Ping(context.Context) error { return nil }

// Issue 13, hole 3: writes failing as unavailable are an outage whatever
// the probe says. The sink pauses (commits nothing, sends nothing to the
// retry topics) for as long as it lasts, far past the retry policy's
// attempts, and dead-letters nothing; when the store takes writes again
// every reading is stored.
func TestSinkPausesThroughPartialOutage(t *testing.T) {
	store := &partialOutageStore{memStore: newMemStore()}
	const attempts = 4
	k, p, r, ctx := runSink(t, store, processors.Config{Partitions: 1, SinkRetry: topology.RetryPolicy{InPlace: 2, Delays: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, MaxAttempts: attempts},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		processors.GroupSink, processors.GroupSink+"-retry")

	store.down.Store(true)
	const packages = 5
	sendPackages(t, k, p, 1, packages)
	// Many more failed writes than the policy allows a record attempts,
	// unless the sink gave up on every record before.
	waitUntil(t, func() error {
		if n := store.failed.Load(); n < 4*attempts*packages {
			lags, err := r.Lag(ctx)
			if err != nil {
				return err
			}
			for _, l := range lags {
				if l.Lag != 0 {
					return fmt.Errorf("%d failed writes", n)
				}
			}
		}
		return nil
	})
	lags, err := r.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lags {
		switch {
		case l.Topic == p.Normalized.Name() && l.Lag != packages:
			t.Errorf("during the outage %s committed %d of %d records of %s: want none", l.Group, packages-l.Lag, packages, l.Topic)
		case l.Topic != p.Normalized.Name() && l.End != 0:
			t.Errorf("during the outage %d records went to %s", l.End, l.Topic)
		}
	}

	store.down.Store(false)
	waitCommitted(t, ctx, r)
	for d := uint64(1); d <= packages; d++ {
		if rows, _ := store.Readings(ctx, sinks.Query{DeviceID: d}); len(rows) != 2 {
			t.Errorf("device %d: %d rows stored, want 2", d, len(rows))
		}
	}
	if dead := deadLetters(t, ctx, k, p); len(dead) != 0 {
		t.Errorf("dead letters of an outage: %+v", dead)
	}
}

// runSink starts an embedded broker and a runner of the pipeline's groups
// declared with cfg, with store as the sink's, and waits until it is ready;
// the test's end stops them.
func runSink(t *testing.T, store sinks.Store, cfg processors.Config, groups ...string) (topology.Kafka, *processors.Pipeline, *topology.Runner, context.Context) {
	t.Helper()
	b := startBroker(t)
	p, r, ctx := runSinkOn(t, b, store, cfg, groups...)
	return topology.Kafka{Brokers: b.Addrs()}, p, r, ctx
}

// startBroker starts an embedded broker that the test's end stops.
func startBroker(t *testing.T) *embedded.Broker {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// runSinkOn starts a runner of the pipeline's groups declared with cfg on
// broker b, with store as the sink's, and waits until it is ready; the
// test's end stops it.
func runSinkOn(t *testing.T, b *embedded.Broker, store sinks.Store, cfg processors.Config, groups ...string) (*processors.Pipeline, *topology.Runner, context.Context) {
	t.Helper()
	k := topology.Kafka{Brokers: b.Addrs()}
	p := processors.New(cfg)
	r, err := topology.NewRunner(builtPlan(t, p.Topology), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(),
		Groups: groups, Logger: slog.New(slog.DiscardHandler), Resources: []topology.Provided{topology.Provide(processors.Store, store)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := stopped(t, done); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitUntil(t, r.Ready)
	return p, r, ctx
}

// deadLetters reads the pipeline's dead-letter topic.
func deadLetters(t *testing.T, ctx context.Context, k topology.Kafka, p *processors.Pipeline) []records.Envelope {
	t.Helper()
	q, err := dlq.Open(k, p.Topology.DeadLetterTopic(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var dead []records.Envelope
	if _, err := q.Scan(ctx, dlq.Filter{}, func(r dlq.Record) error {
		dead = append(dead, r.Envelope)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return dead
}
