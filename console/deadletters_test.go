package console

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// TestDeadLettersAndAlerts runs the endpoints that read Kafka against the
// embedded broker: counts over time, the list with filters, a replay after
// its dry run, and a device's alerts.
func TestDeadLettersAndAlerts(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := topology.Kafka{Brokers: b.Addrs()}
	p := processors.New(processors.Config{Partitions: 2})
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	prod, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(topic, key string, value []byte) {
		t.Helper()
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	envelope := func(stage, reason, device, topic string, partition int32, offset int64, at time.Time) {
		e := records.Envelope{Stage: stage, Reason: reason, Error: reason + " of the test\nsecond line", Topic: topic,
			Partition: partition, Offset: offset, Key: []byte(device), Value: []byte("v"), Timestamp: at,
			Attempts: 1, FirstFailure: at, LastFailure: at}
		v, err := records.EnvelopeCodec{}.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		send(p.DeadLetters.Name(), device, v)
	}
	for i := range 3 {
		envelope("decode", "out_of_range", "7", p.Raw.Name(), 0, int64(i), t0.Add(time.Duration(i)*time.Minute))
	}
	envelope("edge", "header_crc", "8", p.Raw.Name(), -1, -1, t0.Add(30*time.Second))
	envelope("sink", "sink_refused", "7", "telemetry.normalized", 1, 0, t0.Add(90*time.Second))
	alert, err := records.AlertCodec{}.Encode(records.Alert{DeviceID: 7, TimeMs: uint64(t0.UnixMilli()), Kind: records.AlertEvent, EventCode: 3, Severity: 5})
	if err != nil {
		t.Fatal(err)
	}
	send(p.Alerts.Name(), "7", alert)
	send(p.Alerts.Name(), "7", alert) // a replay's repeat (alerts are at least once): listed once

	s, hs := newTestServer(t, func(o *Options) {
		o.Topology, o.Kafka, o.AlertsTopic = p.Topology.Describe(), &k, p.Alerts.Name()
	})
	api := hs.URL + Prefix + "api/"
	decode := func(path string, v any) {
		t.Helper()
		code, body := get(t, api+path, fullKey)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatal(err)
		}
	}

	var st statsJSON
	decode("deadletters/stats?buckets=3", &st)
	if st.Total != 5 || st.ByReason["out_of_range"] != 3 || st.ByStage["edge"] != 1 || st.ByStage["sink"] != 1 {
		t.Errorf("stats = %+v", st.Stats)
	}
	if len(st.Series) != 3 || st.BucketSeconds != 41 || !st.Series[0].Start.Equal(t0) {
		t.Fatalf("series: %d buckets of %v s from %v", len(st.Series), st.BucketSeconds, st.Series)
	}
	// 120 s in 3 buckets of whole seconds: 0-41 s: out_of_range at 0,
	// header_crc at 30; 41-82: out_of_range at 60; 82-123: sink_refused at
	// 90, out_of_range at 120 (the last failure closes the range).
	want := []map[string]int{{"out_of_range": 1, "header_crc": 1}, {"out_of_range": 1}, {"sink_refused": 1, "out_of_range": 1}}
	for i, w := range want {
		got := st.Series[i].ByReason
		if len(got) != len(w) {
			t.Errorf("bucket %d: %v, want %v", i, got, w)
		}
		for r, n := range w {
			if got[r] != n {
				t.Errorf("bucket %d: %v, want %v", i, got, w)
			}
		}
	}

	var ls lettersJSON
	decode("deadletters?reason=out_of_range&limit=2", &ls)
	if ls.Matched != 3 || ls.Read != 5 || len(ls.Items) != 2 || !ls.Items[0].LastFailure.Equal(t0.Add(2*time.Minute)) || !ls.Items[1].LastFailure.Equal(t0.Add(time.Minute)) {
		t.Errorf("letters = %+v", ls)
	}
	if ls.Items[0].Error != "out_of_range of the test" || ls.Items[0].Key != "7" {
		t.Errorf("letter = %+v", ls.Items[0])
	}
	decode("deadletters?device=8&stage=edge", &ls)
	if len(ls.Items) != 1 || ls.Items[0].Reason != "header_crc" || ls.Items[0].Partition != -1 {
		t.Errorf("device 8's letters = %+v", ls.Items)
	}
	decode("deadletters?since="+t0.Add(61*time.Second).Format(time.RFC3339), &ls)
	if ls.Matched != 2 {
		t.Errorf("since 61 s: %d matched, want 2", ls.Matched)
	}

	replay := func(body string) replayJSON {
		t.Helper()
		code, _, b := do(t, http.MethodPost, api+"deadletters/replay", fullKey, "application/json", body)
		if code != 200 {
			t.Fatalf("replay %s: %d %s", body, code, b)
		}
		var r replayJSON
		if err := json.Unmarshal([]byte(b), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := replay(`{"reason":"out_of_range","dry_run":true}`); !r.DryRun || r.Counts["would-replay"] != 3 || r.Total != 3 {
		t.Errorf("dry run = %+v", r)
	}
	if r := replay(`{"stage":"edge","dry_run":true}`); r.Counts["refused"] != 1 {
		t.Errorf("dry run of the edge's = %+v", r)
	}
	// Replay is off unless the server allows it; dry runs are not.
	if code, _, body := do(t, http.MethodPost, api+"deadletters/replay", fullKey, "application/json", `{"reason":"out_of_range","dry_run":false}`); code != 403 || !strings.Contains(body, "--console-replay") {
		t.Errorf("replay while turned off: %d %s", code, body)
	}
	s.opts.Replay = true
	if r := replay(`{"reason":"out_of_range","dry_run":false}`); r.DryRun || r.Counts["replayed"] != 3 {
		t.Errorf("replay = %+v", r)
	}
	if r := replay(`{"reason":"out_of_range","dry_run":true}`); r.Counts["already-replayed"] != 3 {
		t.Errorf("dry run after the replay = %+v", r)
	}

	code, body := get(t, api+"devices/7", fullKey)
	if code != 200 {
		t.Fatalf("device: %d %s", code, body)
	}
	var alerts struct {
		Alerts []alertJSON `json:"alerts"`
		Err    string      `json:"alerts_error"`
	}
	if err := json.Unmarshal([]byte(body), &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts.Alerts) != 1 || alerts.Err != "" || alerts.Alerts[0] != (alertJSON{T: t0.UnixMilli(), Kind: "event", Event: "harsh_brake", Severity: 5}) {
		t.Errorf("alerts = %+v (%s)", alerts.Alerts, alerts.Err)
	}
}
