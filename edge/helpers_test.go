package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

const (
	testRaw        = "test.raw"
	testDLQ        = "test.dlq"
	testPartitions = 4
	testEdgeID     = "edge-test-1"
)

var (
	testSecret     = []byte("current-device-secret-0123456789")
	testPrevSecret = []byte("previous-device-secret-012345678")
	// testNow is the fixed receive time of the fixtures: with milliseconds,
	// and sub-millisecond digits that the edge must drop.
	testNow = time.Date(2026, 3, 14, 15, 9, 26, 535_897_932, time.UTC)
)

// fixture is an edge on a fresh embedded broker, served by httptest.
type fixture struct {
	broker *embedded.Broker
	kafka  topology.Kafka
	edge   *Edge
	reg    *prometheus.Registry
	srv    *httptest.Server
}

// startKafka starts an embedded broker with the test topics.
func startKafka(tb testing.TB) (*embedded.Broker, topology.Kafka) {
	tb.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs(), ClientID: "edge-test"}
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	for _, topic := range []string{testRaw, testDLQ} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: testPartitions, ReplicationFactor: 1}, false); err != nil {
			tb.Fatalf("create %s: %v", topic, err)
		}
	}
	return b, k
}

// newFixture starts a broker and an edge on it; mutate adjusts the
// options, and setup the edge before it serves.
func newFixture(t *testing.T, mutate func(*Options), setup func(*Edge)) *fixture {
	t.Helper()
	b, k := startKafka(t)
	f := &fixture{broker: b, kafka: k, reg: prometheus.NewRegistry()}
	opts := Options{
		Kafka:           k,
		RawTopic:        testRaw,
		DeadLetterTopic: testDLQ,
		Secret:          testSecret,
		PreviousSecret:  testPrevSecret,
		EdgeID:          testEdgeID,
		Registerer:      f.reg,
		Logger:          slog.New(slog.DiscardHandler),
		Now:             func() time.Time { return testNow },
	}
	if mutate != nil {
		mutate(&opts)
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.edge = e
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if setup != nil {
		setup(e)
	}
	f.srv = httptest.NewServer(e.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// result is an answer of the edge.
type result struct {
	code       int
	status     string
	errWord    string
	retryAfter string
}

func readResult(t testing.TB, resp *http.Response) result {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, body %q", ct, b)
	}
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("response body %q: %v", b, err)
	}
	return result{code: resp.StatusCode, status: body.Status, errWord: body.Error, retryAfter: resp.Header.Get("Retry-After")}
}

// post sends body with the given Authorization header ("" for none).
func (f *fixture) post(t testing.TB, body []byte, auth string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return readResult(t, resp)
}

func bearerFor(secret []byte, id uint64) string { return "Bearer " + Token(secret, id) }

const testBaseTime = 1_773_500_000_000

// testPackage encodes a valid version 2 package of device id with a
// message of each type.
func testPackage(t testing.TB, id uint64, snappy bool) []byte {
	t.Helper()
	h := protocol.Header{Version: 2, DeviceID: id, PackageSeq: 7, BaseTimeMs: testBaseTime, Firmware: 0x0203}
	if snappy {
		h.Flags = protocol.FlagSnappy
	}
	b, err := protocol.Encode(h, []protocol.Message{
		{Type: protocol.TypeGPS, TimeMs: testBaseTime, LatE7: 525_200_000, LonE7: 134_050_000, SpeedDkmh: 512, HeadingDeg: 90, HdopD: 9, Satellites: 11},
		{Type: protocol.TypeEngine, TimeMs: testBaseTime + 10, RPM: 2100, CoolantRaw: 130, FuelPct: 64},
		{Type: protocol.TypeEvent, TimeMs: testBaseTime + 20, Code: uint8(protocol.EventHarshBrake), Severity: 2},
		{Type: protocol.TypeBattery, TimeMs: testBaseTime + 30, Millivolts: 12_600},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// manyMessages encodes a valid, uncompressed version 1 package of n accel
// messages.
func manyMessages(t testing.TB, id uint64, n int) []byte {
	t.Helper()
	msgs := make([]protocol.Message, n)
	for i := range msgs {
		msgs[i] = protocol.Message{Type: protocol.TypeAccel, TimeMs: testBaseTime + uint64(i), XMg: int16(i)}
	}
	b, err := protocol.Encode(protocol.Header{Version: 1, DeviceID: id, BaseTimeMs: testBaseTime}, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testRecord is one valid record for hand-assembled packages.
func testRecord(t testing.TB) []byte {
	t.Helper()
	p, err := protocol.AppendPayload(nil, 2, testBaseTime, &protocol.Message{Type: protocol.TypeAccel, TimeMs: testBaseTime, XMg: 10, YMg: -20, ZMg: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return protocol.AppendRecord(nil, p)
}

// readTopic reads n records of topic from the start, failing after a
// generous deadline (a liveness bound, not a timing assertion).
func readTopic(t testing.TB, k topology.Kafka, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs := make(chan *sarama.ConsumerMessage)
	for _, part := range parts {
		pc, err := c.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	var out []*sarama.ConsumerMessage
	deadline := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case m := <-msgs:
			out = append(out, m)
		case <-deadline:
			t.Fatalf("read %d of %d records from %s", len(out), n, topic)
		}
	}
	return out
}

// topicSize returns the number of records in topic (the sum of its
// partitions' newest offsets).
func topicSize(t testing.TB, k topology.Kafka, topic string) int64 {
	t.Helper()
	c, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range parts {
		off, err := c.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		n += off
	}
	return n
}

// metric returns the value of the counter or gauge name with the label
// (empty labelName for none), or 0 if it was never set.
func metric(t testing.TB, reg *prometheus.Registry, name, labelName, labelValue string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelName != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labelName && l.GetValue() == labelValue
			}) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func headerMap(hs []*sarama.RecordHeader) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[string(h.Key)] = string(h.Value)
	}
	return m
}

func msString(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func describe(r result) string {
	return fmt.Sprintf("%d %q/%q retry-after %q", r.code, r.status, r.errWord, r.retryAfter)
}
