package dlq

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// Topics of the test cluster: two partitions each.
const (
	testRaw        = "t.telemetry.raw"
	testNormalized = "t.telemetry.normalized"
	testDLQ        = "t.telemetry.dlq"
)

// startCluster starts an embedded broker with the test topics.
func startCluster(t *testing.T) topology.Kafka {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, topic := range []string{testRaw, testNormalized, testDLQ} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// at returns a fixed test time plus d.
func at(d time.Duration) time.Time {
	return time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC).Add(d)
}

// testPackage encodes a valid version 2 package of device id.
func testPackage(t *testing.T, id uint64) []byte {
	t.Helper()
	const base = 1_773_500_000_000
	b, err := protocol.Encode(protocol.Header{Version: 2, DeviceID: id, PackageSeq: 7, BaseTimeMs: base, Firmware: 0x0203}, []protocol.Message{
		{Type: protocol.TypeEngine, TimeMs: base, RPM: 2100, CoolantRaw: 130, FuelPct: 64},
		{Type: protocol.TypeBattery, TimeMs: base + 30, Millivolts: 12_600},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is the content of the test dead-letter topic.
type fixture struct {
	envs   []records.Envelope
	coords []string // DLQ "partition/offset" of envs[i]
	pkg    []byte   // the package of device 102
}

// Indexes into fixture.envs.
const (
	fxEdge    = iota // edge rejection of device 101, never in the raw topic
	fxRange          // decode, message-level, device 102, raw 0/5
	fxStale          // decode, message-level, same original record as fxRange
	fxCRC            // decode, package-level, device 103, raw 1/7
	fxSink           // sink refused, device 102, normalized 1/3, 3 attempts, headers of an earlier replay
	fxGone           // alerts, topic that does not exist
	fxNoTopic        // panic with no topic
	fxCount
)

// writeFixture writes the test envelopes (and one record that is not an
// envelope) to the dead-letter topic.
func writeFixture(t *testing.T, k topology.Kafka) fixture {
	t.Helper()
	pkg := testPackage(t, 102)
	recv := []records.Header{{Key: "watershed-received-ms", Value: []byte("1773500000000")}, {Key: "watershed-edge", Value: []byte("e1")}}
	envs := make([]records.Envelope, fxCount)
	envs[fxEdge] = records.Envelope{Stage: "edge", Reason: "bad_flags", Error: "package check 3: bad_flags", Topic: testRaw, Partition: -1, Offset: -1,
		Key: []byte("101"), Value: testPackage(t, 101), Headers: recv, Timestamp: at(0), Attempts: 1, FirstFailure: at(0), LastFailure: at(0)}
	envs[fxRange] = records.Envelope{Stage: "t.decode", Reason: "out_of_range", Error: "engine message at 1773500000000 ms (content crc 01020304): out_of_range\nsecond line", Topic: testRaw, Partition: 0, Offset: 5,
		Key: []byte("102"), Value: pkg, Headers: recv, Timestamp: at(time.Hour), Attempts: 1, FirstFailure: at(time.Hour), LastFailure: at(time.Hour)}
	envs[fxStale] = envs[fxRange]
	envs[fxStale].Reason = "stale_timestamp"
	envs[fxStale].Error = "battery message: stale_timestamp"
	envs[fxCRC] = records.Envelope{Stage: "t.decode", Reason: "header_crc", Error: "package check 2: header_crc", Topic: testRaw, Partition: 1, Offset: 7,
		Key: []byte("103"), Value: []byte("not a package"), Timestamp: at(2 * time.Hour), Attempts: 1, FirstFailure: at(2 * time.Hour), LastFailure: at(2 * time.Hour)}
	envs[fxSink] = records.Envelope{Stage: "t.sink", Reason: "sink_refused", Error: "store refused 2 readings: timeout", Topic: testNormalized, Partition: 1, Offset: 3,
		Key: []byte("102"), Value: []byte("normalized readings"),
		Headers: []records.Header{
			{Key: "x-trace", Value: []byte("abc")},
			// Left by an earlier replay: replaced, not repeated.
			{Key: HeaderReplay, Value: []byte(testDLQ + "/0/0")},
			{Key: HeaderAttempts, Value: []byte("1")},
		},
		Timestamp: at(3 * time.Hour), Attempts: 3, FirstFailure: at(150 * time.Minute), LastFailure: at(3 * time.Hour)}
	envs[fxGone] = records.Envelope{Stage: "t.alerts", Reason: "callback_error", Error: "boom", Topic: "t.gone", Partition: 0, Offset: 1,
		Key: []byte("104"), Value: []byte("x"), Timestamp: at(4 * time.Hour), Attempts: 1, FirstFailure: at(4 * time.Hour), LastFailure: at(4 * time.Hour)}
	envs[fxNoTopic] = records.Envelope{Stage: "t.dedupe", Reason: "panic", Error: "panic: nil map", Key: []byte("105"), Value: []byte("y"),
		Timestamp: at(5 * time.Hour), Attempts: 1, FirstFailure: at(5 * time.Hour), LastFailure: at(5 * time.Hour)}

	f := fixture{envs: envs, pkg: pkg}
	p, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, e := range envs {
		b, err := records.EnvelopeCodec{}.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: testDLQ, Key: sarama.ByteEncoder(e.Key), Value: sarama.ByteEncoder(b)})
		if err != nil {
			t.Fatal(err)
		}
		f.coords = append(f.coords, coordinates(part, off))
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: testDLQ, Key: sarama.StringEncoder("999"), Value: sarama.StringEncoder("\xffnot an envelope")}); err != nil {
		t.Fatal(err)
	}
	return f
}

// openQueue opens the test dead-letter topic.
func openQueue(t *testing.T, k topology.Kafka) *Queue {
	t.Helper()
	q, err := Open(k, testDLQ, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Error(err)
		}
	})
	return q
}

// readTopic returns every record of topic, by partition then offset, or
// nil when the topic does not exist.
func readTopic(t *testing.T, k topology.Kafka, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	client, err := sarama.NewClient(k.Brokers, readerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topics, err := client.Topics()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range topics {
		found = found || x == topic
	}
	if !found {
		return nil
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var out []*sarama.ConsumerMessage
	err = scanTopic(context.Background(), client, consumer, topic, func(m *sarama.ConsumerMessage) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// headerMap returns the headers of m by key, failing on a repeated key.
func headerMap(t *testing.T, m *sarama.ConsumerMessage) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range m.Headers {
		if _, dup := out[string(h.Key)]; dup {
			t.Errorf("header %q repeated on %s/%d/%d", h.Key, m.Topic, m.Partition, m.Offset)
		}
		out[string(h.Key)] = string(h.Value)
	}
	return out
}
