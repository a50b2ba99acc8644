package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/embedded"
)

func testConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	return cfg
}

// startRetained starts a broker whose retention loop never fires on its own,
// so that the test runs each pass with Retain.
func startRetained(t *testing.T, r embedded.Retention) *embedded.Broker {
	t.Helper()
	r.Interval, r.CompactInterval = time.Hour, time.Hour
	b, err := embedded.Start(embedded.Options{Retention: &r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func createTopic(t *testing.T, b *embedded.Broker, name, policy string) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(b.Addrs(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// A week of retention.ms, as the topology gives streams: kfake's own
	// retention removes nothing in a test.
	week := "604800000"
	err = admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"cleanup.policy": &policy, "retention.ms": &week}}, false)
	if err != nil {
		t.Fatal(err)
	}
}

// produce sends n records to partition 0 of topic, keyed and valued by key(i)
// and value(i), in batches of batch records.
func produce(t *testing.T, b *embedded.Broker, topic string, n, batch int, key, value func(i int) string) {
	t.Helper()
	p, err := sarama.NewSyncProducer(b.Addrs(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for from := 0; from < n; from += batch {
		var msgs []*sarama.ProducerMessage
		for i := from; i < min(n, from+batch); i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: 0,
				Key: sarama.StringEncoder(key(i)), Value: sarama.StringEncoder(value(i))})
		}
		if err := p.SendMessages(msgs); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads partition 0 of topic from its oldest record to its end.
func readAll(t *testing.T, b *embedded.Broker, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	log := b.Log(topic)
	if len(log) != 1 {
		t.Fatalf("topic %s: %d partitions", topic, len(log))
	}
	c, err := sarama.NewConsumer(b.Addrs(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for len(out) == 0 || out[len(out)-1].Offset+1 < log[0].End {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: read %d records, stuck before offset %d", topic, len(out), log[0].End)
		}
	}
	return out
}

// markHandler marks every record below upTo, commits after every every
// records, and signals each commit.
type markHandler struct {
	upTo, every int64
	committed   chan struct{}
}

func (markHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (markHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h markHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		if m.Offset < h.upTo {
			s.MarkMessage(m, "")
		}
		if m.Offset < h.upTo && (m.Offset+1)%h.every == 0 {
			s.Commit()
			h.committed <- struct{}{}
		}
	}
	return nil
}

// idleHandler joins and holds its claims without consuming or committing.
type idleHandler struct{ joined chan struct{} }

func (h idleHandler) Setup(sarama.ConsumerGroupSession) error {
	h.joined <- struct{}{}
	return nil
}
func (idleHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (idleHandler) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}

// runGroup runs a consumer group on topics in the background; the returned
// function stops it.
func runGroup(t *testing.T, b *embedded.Broker, group string, topics []string, h sarama.ConsumerGroupHandler) func() {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(b.Addrs(), group, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var err error
		for ctx.Err() == nil && err == nil {
			err = cg.Consume(ctx, topics, h)
		}
		done <- err
	}()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			t.Error(err)
		}
		if err := cg.Close(); err != nil {
			t.Error(err)
		}
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func retain(t *testing.T, b *embedded.Broker) embedded.RetentionPass {
	t.Helper()
	pass, err := b.Retain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pass
}

// Consumed retention trims a delete-policy topic to the offset its group
// committed and not beyond, waits for a subscribed group that has not
// committed, keeps a topic named in Keep and topics nobody reads, and
// compacts a compacted topic to the latest value of each key.
func TestConsumedRetention(t *testing.T) {
	b := startRetained(t, embedded.Retention{Keep: []string{"kept"}})
	createTopic(t, b, "events", "delete")
	createTopic(t, b, "kept", "delete")
	createTopic(t, b, "unread", "delete")
	createTopic(t, b, "table", "compact")
	const n = 100
	key := func(i int) string { return fmt.Sprintf("k%d", i%10) }
	value := func(i int) string { return fmt.Sprintf("v%d", i) }
	for _, topic := range []string{"events", "kept", "unread"} {
		produce(t, b, topic, n, 10, key, value)
	}
	// One record a batch, and a last record on a key of its own: kfake
	// never compacts the last batch, as Kafka never compacts the active
	// segment.
	produce(t, b, "table", n, 1, key, value)
	produce(t, b, "table", 1, 1, func(int) string { return "last" }, value)

	// Nobody has read anything yet: everything stays.
	if pass := retain(t, b); pass.Trimmed != 0 || pass.Capped != 0 {
		t.Fatalf("a pass before any reader trimmed %+v", pass)
	}
	if got := b.Log("events")[0]; got.Start != 0 || got.End != n {
		t.Fatalf("events log %+v before any commit", got)
	}

	// A group that reads events but has not committed holds it whole
	// while another group commits 40.
	joined := make(chan struct{}, 1)
	stopIdle := runGroup(t, b, "idle", []string{"events"}, idleHandler{joined})
	waitFor(t, joined, "the idle group to join")
	committed := make(chan struct{}, 2)
	stopReader := runGroup(t, b, "reader", []string{"events", "kept"}, markHandler{upTo: 40, every: 40, committed: committed})
	waitFor(t, committed, "the first commit")
	waitFor(t, committed, "the second commit")
	stopReader()
	retain(t, b)
	if got := b.Log("events")[0].Start; got != 0 {
		t.Fatalf("events trimmed to %d while the idle group had not committed", got)
	}
	stopIdle()

	pass := retain(t, b)
	if got := b.Log("events")[0]; got.Start != 40 || got.End != n {
		t.Fatalf("events log %+v, want start 40 (the committed offset), end %d", got, n)
	}
	if pass.Trimmed != 40 {
		t.Fatalf("pass trimmed %d records, want 40", pass.Trimmed)
	}
	rest := readAll(t, b, "events")
	if len(rest) != n-40 || rest[0].Offset != 40 || string(rest[0].Value) != "v40" {
		t.Fatalf("read %d records from offset %d after the trim, want the %d from 40", len(rest), rest[0].Offset, n-40)
	}
	if got := b.Log("kept")[0].Start; got != 0 || len(readAll(t, b, "kept")) != n {
		t.Fatalf("kept topic trimmed to %d", got)
	}
	if got := b.Log("unread")[0].Start; got != 0 {
		t.Fatalf("unread topic trimmed to %d without a cap", got)
	}

	// Compaction keeps the latest value of each key, nothing older.
	latest := map[string]string{}
	for _, m := range readAll(t, b, "table") {
		if prev, ok := latest[string(m.Key)]; ok {
			t.Fatalf("key %s read twice (%s, %s) after compaction", m.Key, prev, m.Value)
		}
		latest[string(m.Key)] = string(m.Value)
	}
	for i := n - 10; i < n; i++ {
		if got := latest[key(i)]; got != value(i) {
			t.Fatalf("key %s: value %q after compaction, want %q", key(i), got, value(i))
		}
	}
	if len(latest) != 11 {
		t.Fatalf("%d keys after compaction, want 11", len(latest))
	}
	if got := b.Log("table")[0].End; got != n+1 {
		t.Fatalf("table end %d", got)
	}
}

// A delete-policy topic nobody reads is capped at about UnreadMaxBytes,
// newest records kept.
func TestUnreadCap(t *testing.T) {
	const capBytes = 20 << 10
	b := startRetained(t, embedded.Retention{UnreadMaxBytes: capBytes})
	createTopic(t, b, "alerts", "delete")
	produce(t, b, "alerts", 200, 10, func(i int) string { return fmt.Sprint(i) },
		func(int) string { return strings.Repeat("x", 1000) })
	// The cap is met by the mean record size, and a batch's bytes go only
	// with its last record: the partition may keep up to one batch (10
	// records here) more than the cap.
	batchBytes := b.Log("alerts")[0].Bytes / 20
	pass := retain(t, b)
	got := b.Log("alerts")[0]
	if got.Start == 0 || got.End != 200 || got.Bytes > capBytes+batchBytes || pass.Capped != got.Start {
		t.Fatalf("alerts log %+v after pass %+v, want start > 0, end 200, at most %d bytes and a batch (%d)", got, pass, capBytes, batchBytes)
	}
	if rest := readAll(t, b, "alerts"); int64(len(rest)) != got.End-got.Start || rest[len(rest)-1].Offset != 199 {
		t.Fatalf("read %d records after the cap", len(rest))
	}
}

// With consumed retention the broker's memory stays bounded while far more
// than that passes through a consumed topic: 48 MiB go through, and the heap
// after a collection grows by less than 16 MiB (kfake's default 100 MiB
// segment would keep all of it).
func TestRetentionBoundsMemory(t *testing.T) {
	b := startRetained(t, embedded.Retention{SegmentBytes: 256 << 10})
	createTopic(t, b, "stream", "delete")
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	value := strings.Repeat("y", 1024)
	const rounds, perRound = 24, 2048 // 2 MiB a round
	committed := make(chan struct{}, 1)
	stop := runGroup(t, b, "consumer", []string{"stream"}, markHandler{upTo: rounds * perRound, every: perRound, committed: committed})
	defer stop()
	before := heap()
	for r := range rounds {
		produce(t, b, "stream", perRound, 256, func(i int) string { return fmt.Sprint(i) }, func(int) string { return value })
		waitFor(t, committed, "the group's commit")
		end := int64((r + 1) * perRound)
		retain(t, b)
		if got := b.Log("stream")[0].Start; got != end {
			t.Fatalf("round %d: log starts at %d, want the committed %d", r, got, end)
		}
	}
	after := heap()
	if grown := int64(after) - int64(before); grown > 16<<20 {
		t.Fatalf("heap grew %d MiB while 48 MiB passed through a consumed topic", grown>>20)
	}
}
