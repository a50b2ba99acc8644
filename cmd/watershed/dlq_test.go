package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// dlqTestCluster is an embedded broker with the raw, normalized and
// dead-letter topics of the pipeline of prefix "x." (two partitions each)
// and a few dead letters.
type dlqTestCluster struct {
	k       topology.Kafka
	pkg     []byte            // device 7's package, dead-lettered by decode
	coords  map[string]string // DLQ "partition/offset" by reason
	brokers string
}

func newDLQTestCluster(t *testing.T) *dlqTestCluster {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	c := &dlqTestCluster{k: topology.Kafka{Brokers: b.Addrs()}, coords: map[string]string{}, brokers: strings.Join(b.Addrs(), ",")}
	admin, err := sarama.NewClusterAdmin(c.k.Brokers, kafkaclient.Config(c.k))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"x.telemetry.raw", "x.telemetry.normalized", "x.telemetry.dlq"} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close()

	const base = 1_773_500_000_000
	c.pkg, err = protocol.Encode(protocol.Header{Version: 2, DeviceID: 7, PackageSeq: 3, BaseTimeMs: base, Firmware: 0x0105}, []protocol.Message{
		{Type: protocol.TypeEngine, TimeMs: base, RPM: 13000, CoolantRaw: 130, FuelPct: 64},
		{Type: protocol.TypeBattery, TimeMs: base + 30, Millivolts: 12_600},
	})
	if err != nil {
		t.Fatal(err)
	}
	badFlags := append([]byte(nil), c.pkg...)
	badFlags[3] |= 0x80 // a reserved flag bit, under a resealed header CRC
	if err := protocol.ResealHeader(badFlags); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	recv := []records.Header{{Key: "watershed-received-ms", Value: []byte("1773500000000")}}
	envs := []records.Envelope{
		{Stage: "x.decode", Reason: "out_of_range", Error: "engine message at 1773500000000 ms: out_of_range\nmore", Topic: "x.telemetry.raw", Partition: 1, Offset: 4,
			Key: []byte("7"), Value: c.pkg, Headers: recv, Timestamp: t0, Attempts: 1, FirstFailure: t0, LastFailure: t0},
		{Stage: "edge", Reason: "bad_flags", Error: "package check 3: bad_flags", Topic: "x.telemetry.raw", Partition: -1, Offset: -1,
			Key: []byte("8"), Value: badFlags, Headers: recv, Timestamp: t0.Add(time.Hour), Attempts: 1, FirstFailure: t0.Add(time.Hour), LastFailure: t0.Add(time.Hour)},
		{Stage: "x.sink", Reason: "sink_refused", Error: "store refused 1 readings: timeout", Topic: "x.telemetry.normalized", Partition: 0, Offset: 9,
			Key: []byte("9"), Value: []byte{0xde, 0xad}, Headers: []records.Header{{Key: "trace", Value: []byte("t-1")}},
			Timestamp: t0.Add(2 * time.Hour), Attempts: 4, FirstFailure: t0.Add(time.Hour), LastFailure: t0.Add(2 * time.Hour)},
	}
	p, err := sarama.NewSyncProducer(c.k.Brokers, kafkaclient.ProducerConfig(c.k))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, e := range envs {
		b, err := records.EnvelopeCodec{}.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: "x.telemetry.dlq", Key: sarama.ByteEncoder(e.Key), Value: sarama.ByteEncoder(b)})
		if err != nil {
			t.Fatal(err)
		}
		c.coords[e.Reason] = fmt.Sprintf("%d/%d", part, off)
	}
	return c
}

// run runs `watershed dlq` with args after the common flags.
func (c *dlqTestCluster) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	all := append([]string{args[0], "--brokers", c.brokers, "--prefix", "x."}, args[1:]...)
	code = runDLQ(context.Background(), registry(), all, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// records returns the records of topic.
func (c *dlqTestCluster) records(t *testing.T, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	consumer, err := sarama.NewConsumer(c.k.Brokers, kafkaclient.Config(c.k))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	client, err := sarama.NewClient(c.k.Brokers, kafkaclient.Config(c.k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var out []*sarama.ConsumerMessage
	for p := int32(0); p < 2; p++ {
		next, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if next == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for m := range pc.Messages() {
			out = append(out, m)
			if m.Offset == next-1 {
				break
			}
		}
		pc.Close()
	}
	return out
}

func TestDLQList(t *testing.T) {
	c := newDLQTestCluster(t)
	code, out, errOut := c.run(t, "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("list printed %d lines:\n%s", len(lines), out)
	}
	for _, want := range []string{
		"2026-03-14T12:00:00Z  x.decode  out_of_range  key=7  from=x.telemetry.raw/1/4  attempts=1  dlq=" + c.coords["out_of_range"] + "  engine message at 1773500000000 ms: out_of_range",
		"2026-03-14T13:00:00Z  edge  bad_flags  key=8  from=x.telemetry.raw/-1/-1  attempts=1  dlq=" + c.coords["bad_flags"] + "  package check 3: bad_flags",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("list lacks the line\n%s\nin\n%s", want, out)
		}
	}

	filters := []struct {
		args []string
		want []string // reasons
	}{
		{[]string{"--stage", "decode"}, []string{"out_of_range"}}, // the prefix is added
		{[]string{"--stage", "x.sink"}, []string{"sink_refused"}},
		{[]string{"--stage", "edge"}, []string{"bad_flags"}},
		{[]string{"--reason", "bad_flags"}, []string{"bad_flags"}},
		{[]string{"--device", "9"}, []string{"sink_refused"}},
		{[]string{"--since", "2026-03-14T13:00:00Z"}, []string{"bad_flags", "sink_refused"}},
		{[]string{"--until", "2026-03-14T13:00:00Z"}, []string{"out_of_range"}},
		{[]string{"--source-topic", "x.telemetry.normalized"}, []string{"sink_refused"}},
		{[]string{"--source-partition", "-1"}, []string{"bad_flags"}},
		{[]string{"--source-partition", "1", "--source-offset", "4"}, []string{"out_of_range"}},
		{[]string{"--limit", "1", "--reason", "sink_refused"}, []string{"sink_refused"}},
	}
	for _, f := range filters {
		code, out, errOut := c.run(t, append([]string{"list", "--json"}, f.args...)...)
		if code != 0 {
			t.Fatalf("list %v: exit %d: %s", f.args, code, errOut)
		}
		var got []string
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var e envelopeJSON
			if err := dec.Decode(&e); err != nil {
				t.Fatalf("list %v: %v in %s", f.args, err, out)
			}
			if e.DLQTopic != "x.telemetry.dlq" || e.Package != nil {
				t.Errorf("list %v: line %+v", f.args, e)
			}
			got = append(got, e.Reason)
		}
		if !sameSet(got, f.want) {
			t.Errorf("list %v = %v, want %v", f.args, got, f.want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"1h":                        now.Add(-time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"2026-03-01T00:00:00Z":      time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"2026-03-01T01:00:00+01:00": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := dlq.ParseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("dlq.ParseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "yesterday", "2026-03-01"} {
		if _, err := dlq.ParseWhen(in, now); err == nil {
			t.Errorf("dlq.ParseWhen(%q) succeeded", in)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestDLQUsage(t *testing.T) {
	c := newDLQTestCluster(t)
	for _, args := range [][]string{
		{"list", "--since", "yesterday"},
		{"list", "--since", "-1h"},
		{"list", "--time-field", "arrival"},
		{"list", "--source-partition", "x"},
		{"show"},
		{"show", "--partition", "0"},
		{"stats", "extra"},
	} {
		if code, _, errOut := c.run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	var out, errOut bytes.Buffer
	if code := runDLQ(context.Background(), registry(), nil, nil, &out, &errOut); code != 2 {
		t.Errorf("no subcommand: exit %d", code)
	}
	if code := runDLQ(context.Background(), registry(), []string{"purge"}, nil, &out, &errOut); code != 2 {
		t.Errorf("unknown subcommand: exit %d", code)
	}
	t.Setenv("WATERSHED_KAFKA_BROKERS", "")
	if code := runDLQ(context.Background(), registry(), []string{"list"}, nil, &out, &errOut); code != 2 {
		t.Errorf("no brokers: exit %d", code)
	}
	if code, _, _ := c.run(t, "show", "--partition", "0", "--offset", "999"); code != 1 {
		t.Errorf("show of a missing record: exit %d, want 1", code)
	}
}

func TestDLQShowDecodesThePackage(t *testing.T) {
	c := newDLQTestCluster(t)
	p, o, _ := strings.Cut(c.coords["out_of_range"], "/")
	code, out, errOut := c.run(t, "show", "--partition", p, "--offset", o)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show printed no JSON: %v\n%s", err, out)
	}
	want, err := protocol.MarshalVectorJSON(protocol.Decode(c.pkg))
	if err != nil {
		t.Fatal(err)
	}
	var wantPkg any
	if err := json.Unmarshal(want, &wantPkg); err != nil {
		t.Fatal(err)
	}
	gotPkg, _ := json.Marshal(got["package"])
	wantJSON, _ := json.Marshal(wantPkg)
	if string(gotPkg) != string(wantJSON) {
		t.Errorf("package = %s, want %s", gotPkg, wantJSON)
	}
	if got["reason"] != "out_of_range" || got["key"] != "7" || got["stage"] != "x.decode" || got["topic"] != "x.telemetry.raw" {
		t.Errorf("envelope fields: %v", got)
	}
	if _, ok := got["value_hex"]; ok {
		t.Error("a package is printed in hex without --hex")
	}
	if hs, _ := got["headers"].([]any); len(hs) != 1 {
		t.Errorf("headers = %v", got["headers"])
	}

	// A value that is not a package is printed in hex.
	p, o, _ = strings.Cut(c.coords["sink_refused"], "/")
	code, out, errOut = c.run(t, "show", "--partition", p, "--offset", o)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	var sink envelopeJSON
	if err := json.Unmarshal([]byte(out), &sink); err != nil {
		t.Fatal(err)
	}
	if sink.ValueHex != "dead" || sink.Package != nil || sink.Attempts != 4 {
		t.Errorf("sink dead letter: %+v", sink)
	}

	// An edge rejection's intact header is shown with its reason.
	p, o, _ = strings.Cut(c.coords["bad_flags"], "/")
	code, out, errOut = c.run(t, "show", "--partition", p, "--offset", o)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	var e envelopeJSON
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	if string(e.Package) == "" || !strings.Contains(string(e.Package), `"reject": "bad_flags"`) || e.PackageHeader["device_id"] != "7" || e.ValueHex == "" {
		t.Errorf("edge dead letter: package %s header %v", e.Package, e.PackageHeader)
	}
}

func TestDLQStats(t *testing.T) {
	c := newDLQTestCluster(t)
	code, out, errOut := c.run(t, "stats", "--json")
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, errOut)
	}
	var s dlq.Stats
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s.Total != 3 || s.ByStage["x.decode"] != 1 || s.ByStage["edge"] != 1 || s.ByReason["sink_refused"] != 1 {
		t.Errorf("stats = %+v", s)
	}
	code, out, errOut = c.run(t, "stats", "--stage", "edge")
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"x.telemetry.dlq: 1 dead letters\n", "by reason:\n  bad_flags", "by stage:\n  edge", "failures from 2026-03-14T13:00:00Z to 2026-03-14T13:00:00Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats text lacks %q:\n%s", want, out)
		}
	}
}

func TestDLQReplay(t *testing.T) {
	c := newDLQTestCluster(t)

	// The default is a dry run.
	code, out, errOut := c.run(t, "replay")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "dry run: 2 would be replayed, 0 already replayed, 1 refused; nothing written") {
		t.Errorf("dry run output:\n%s", out)
	}
	if !strings.Contains(out, "refused          dlq="+c.coords["bad_flags"]) {
		t.Errorf("dry run does not refuse the edge rejection:\n%s", out)
	}
	if n := len(c.records(t, "x.telemetry.raw")) + len(c.records(t, "x.telemetry.normalized")); n != 0 {
		t.Fatalf("dry run wrote %d records", n)
	}

	code, out, errOut = c.run(t, "replay", "--dry-run=false", "--json")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(errOut, "2 replayed, 0 already replayed, 1 refused, 0 failed") {
		t.Errorf("replay summary: %s", errOut)
	}
	var items []dlq.ItemJSON
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var it dlq.ItemJSON
		if err := dec.Decode(&it); err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	if len(items) != 3 {
		t.Fatalf("replay printed %d items:\n%s", len(items), out)
	}
	raw := c.records(t, "x.telemetry.raw")
	if len(raw) != 1 || string(raw[0].Key) != "7" || !bytes.Equal(raw[0].Value, c.pkg) {
		t.Fatalf("raw topic after the replay: %v", raw)
	}
	h := map[string]string{}
	for _, x := range raw[0].Headers {
		h[string(x.Key)] = string(x.Value)
	}
	if h[dlq.HeaderReplay] != "x.telemetry.dlq/"+c.coords["out_of_range"] || h[dlq.HeaderAttempts] != "1" ||
		h[dlq.HeaderReplayGroup] != "x.decode" || h["watershed-received-ms"] != "1773500000000" {
		t.Errorf("replayed headers %v", h)
	}
	norm := c.records(t, "x.telemetry.normalized")
	if len(norm) != 1 || string(norm[0].Key) != "9" {
		t.Fatalf("normalized topic after the replay: %v", norm)
	}
	for _, x := range norm[0].Headers {
		h[string(x.Key)] = string(x.Value)
	}
	if h[dlq.HeaderAttempts] != "4" || h["trace"] != "t-1" {
		t.Errorf("sink replay headers %v", h)
	}

	// Once: a second replay writes nothing.
	code, out, errOut = c.run(t, "replay", "--dry-run=false")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "0 replayed, 2 already replayed, 1 refused, 0 failed") {
		t.Errorf("second replay:\n%s", out)
	}
	if n := len(c.records(t, "x.telemetry.raw")) + len(c.records(t, "x.telemetry.normalized")); n != 2 {
		t.Errorf("second replay wrote records: %d now", n)
	}

	// Edge rejections only with --include-edge.
	code, out, errOut = c.run(t, "replay", "--dry-run=false", "--include-edge", "--stage", "edge")
	if code != 0 || !strings.Contains(out, "1 replayed, 0 already replayed, 0 refused") {
		t.Fatalf("edge replay: exit %d: %s\n%s", code, errOut, out)
	}
	if n := len(c.records(t, "x.telemetry.raw")); n != 2 {
		t.Errorf("raw holds %d records after the edge replay, want 2", n)
	}
}

// While decode is fused into dedupe nothing reads the decoded topic: a
// dead letter of the unfused dedupe stage is refused, and replayed once
// the pipeline runs unfused.
func TestDLQReplayRefusesFusedAwayTopic(t *testing.T) {
	c := newDLQTestCluster(t)
	admin, err := sarama.NewClusterAdmin(c.k.Brokers, kafkaclient.Config(c.k))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("x.telemetry.decoded", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	t0 := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	b, err := records.EnvelopeCodec{}.Encode(records.Envelope{Stage: "x.dedupe", Reason: "callback_error", Topic: "x.telemetry.decoded",
		Partition: 0, Offset: 2, Key: []byte("7"), Value: []byte{1}, Timestamp: t0, Attempts: 1, FirstFailure: t0, LastFailure: t0})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer(c.k.Brokers, kafkaclient.ProducerConfig(c.k))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "x.telemetry.dlq", Key: sarama.StringEncoder("7"), Value: sarama.ByteEncoder(b)}); err != nil {
		t.Fatal(err)
	}
	p.Close()

	code, out, errOut := c.run(t, "replay", "--stage", "dedupe", "--fuse", "decode")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "0 would be replayed, 0 already replayed, 1 refused") || !strings.Contains(out, "x.telemetry.decoded is not a topic of the pipeline as configured") {
		t.Errorf("replay with decode fused:\n%s", out)
	}
	code, out, errOut = c.run(t, "replay", "--stage", "dedupe")
	if code != 0 || !strings.Contains(out, "1 would be replayed, 0 already replayed, 0 refused") {
		t.Errorf("replay unfused: exit %d: %s\n%s", code, errOut, out)
	}
}
