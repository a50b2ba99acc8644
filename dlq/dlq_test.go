package dlq

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

func ptr[T any](v T) *T { return &v }

// scanIndexes returns the fixture indexes of the envelopes f selects, in
// scan order.
func scanIndexes(t *testing.T, q *Queue, fx fixture, f Filter) ([]int, ScanStats) {
	t.Helper()
	var got []int
	st, err := q.Scan(context.Background(), f, func(r Record) error {
		i := slices.Index(fx.coords, r.Coordinates())
		if i < 0 {
			t.Fatalf("scan returned unknown record %s", r.Coordinates())
		}
		got = append(got, i)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

func TestScanFilters(t *testing.T) {
	k := startCluster(t)
	fx := writeFixture(t, k)
	q := openQueue(t, k)

	all, st := scanIndexes(t, q, fx, Filter{})
	if st.Read != fxCount+1 || st.Matched != fxCount || st.Undecodable != 1 {
		t.Errorf("stats of a full scan = %+v, want %d read, %d matched, 1 undecodable", st, fxCount+1, fxCount)
	}
	slices.Sort(all)
	if !slices.Equal(all, []int{0, 1, 2, 3, 4, 5, 6}) {
		t.Errorf("full scan = %v", all)
	}

	cases := []struct {
		name string
		f    Filter
		want []int
	}{
		{"stage", Filter{Stages: []string{"t.decode"}}, []int{fxRange, fxStale, fxCRC}},
		{"stages", Filter{Stages: []string{"edge", "t.sink"}}, []int{fxEdge, fxSink}},
		{"reason", Filter{Reason: "header_crc"}, []int{fxCRC}},
		{"device", Filter{Device: "102"}, []int{fxRange, fxStale, fxSink}},
		{"since", Filter{Since: at(2 * time.Hour)}, []int{fxCRC, fxSink, fxGone, fxNoTopic}},
		{"until", Filter{Until: at(2 * time.Hour)}, []int{fxEdge, fxRange, fxStale}},
		{"range", Filter{Since: at(time.Hour), Until: at(3 * time.Hour)}, []int{fxRange, fxStale, fxCRC}},
		// fxSink failed first at 2h30 but its record is from 3h.
		{"timestamp range", Filter{Since: at(150 * time.Minute), Until: at(3*time.Hour + 1), TimeField: ByTimestamp}, []int{fxSink}},
		{"topic", Filter{Topic: testNormalized}, []int{fxSink}},
		{"partition", Filter{Topic: testRaw, Partition: ptr(int32(-1))}, []int{fxEdge}},
		{"offset", Filter{Partition: ptr(int32(1)), Offset: ptr(int64(7))}, []int{fxCRC}},
		{"combined", Filter{Stages: []string{"t.decode"}, Device: "102", Reason: "stale_timestamp"}, []int{fxStale}},
		{"none", Filter{Reason: "no_such_reason"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _ := scanIndexes(t, q, fx, c.f)
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}

	t.Run("limit", func(t *testing.T) {
		got, st := scanIndexes(t, q, fx, Filter{Stages: []string{"t.decode"}, Limit: 2})
		if len(got) != 2 || st.Matched != 2 {
			t.Errorf("limit 2 gave %v (%+v)", got, st)
		}
	})
	t.Run("callback error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := q.Scan(context.Background(), Filter{}, func(Record) error { return boom })
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want boom", err)
		}
	})
}

func TestGet(t *testing.T) {
	k := startCluster(t)
	fx := writeFixture(t, k)
	q := openQueue(t, k)
	for i, c := range fx.coords {
		p, o := parseCoords(t, c)
		r, err := q.Get(context.Background(), p, o)
		if err != nil {
			t.Fatalf("get %s: %v", c, err)
		}
		if r.Envelope.Reason != fx.envs[i].Reason || string(r.Envelope.Value) != string(fx.envs[i].Value) {
			t.Errorf("get %s = %s %q, want %s", c, r.Envelope.Reason, r.Envelope.Value, fx.envs[i].Reason)
		}
		if !r.Envelope.LastFailure.Equal(fx.envs[i].LastFailure) {
			t.Errorf("get %s: last failure %v, want %v", c, r.Envelope.LastFailure, fx.envs[i].LastFailure)
		}
	}
	if _, err := q.Get(context.Background(), 0, 1000); !errors.Is(err, ErrNotFound) {
		t.Errorf("get past the end: err = %v, want ErrNotFound", err)
	}
}

// parseCoords parses "partition/offset".
func parseCoords(t *testing.T, s string) (int32, int64) {
	t.Helper()
	ps, os, ok := strings.Cut(s, "/")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("bad coordinates %q", s)
	}
	return int32(p), o
}

func TestStats(t *testing.T) {
	k := startCluster(t)
	writeFixture(t, k)
	q := openQueue(t, k)
	s, err := q.Stats(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != fxCount || s.Undecodable != 1 {
		t.Errorf("total %d undecodable %d, want %d and 1", s.Total, s.Undecodable, fxCount)
	}
	wantStage := map[string]int{"edge": 1, "t.decode": 3, "t.sink": 1, "t.alerts": 1, "t.dedupe": 1}
	for st, n := range wantStage {
		if s.ByStage[st] != n {
			t.Errorf("stage %s: %d, want %d (%v)", st, s.ByStage[st], n, s.ByStage)
		}
	}
	if len(s.ByStage) != len(wantStage) {
		t.Errorf("stages %v", s.ByStage)
	}
	wantReason := map[string]int{"bad_flags": 1, "out_of_range": 1, "stale_timestamp": 1, "header_crc": 1, "sink_refused": 1, "callback_error": 1, "panic": 1}
	for r, n := range wantReason {
		if s.ByReason[r] != n {
			t.Errorf("reason %s: %d, want %d", r, s.ByReason[r], n)
		}
	}
	if len(s.ByStageReason) != 7 || s.ByStageReason[0].Stage != "edge" {
		t.Errorf("by stage and reason: %+v", s.ByStageReason)
	}
	if !s.OldestFailure.Equal(at(0)) || !s.NewestFailure.Equal(at(5*time.Hour)) {
		t.Errorf("failures from %v to %v", s.OldestFailure, s.NewestFailure)
	}

	s, err = q.Stats(context.Background(), Filter{Device: "102"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 3 || s.ByStage["t.decode"] != 2 || s.ByStage["t.sink"] != 1 {
		t.Errorf("stats of device 102: %+v", s)
	}
}

// actions returns the action of every fixture envelope in a report.
func actions(t *testing.T, fx fixture, rep ReplayReport) map[int]Action {
	t.Helper()
	out := map[int]Action{}
	for _, it := range rep.Items {
		i := slices.Index(fx.coords, it.Record.Coordinates())
		if i < 0 {
			t.Fatalf("report names unknown record %s", it.Record.Coordinates())
		}
		out[i] = it.Action
	}
	return out
}

func TestReplay(t *testing.T) {
	k := startCluster(t)
	fx := writeFixture(t, k)
	q := openQueue(t, k)
	ctx := context.Background()
	now := at(24 * time.Hour)
	opts := ReplayOptions{Topics: []string{testRaw, testNormalized, "t.gone"}, Now: func() time.Time { return now }}

	// A dry run classifies and writes nothing.
	dry := opts
	dry.DryRun = true
	rep, err := q.Replay(ctx, Filter{}, dry)
	if err != nil {
		t.Fatal(err)
	}
	wantDry := map[int]Action{
		fxEdge: ActionRefused, fxRange: ActionWouldReplay, fxStale: ActionWouldReplay, fxCRC: ActionWouldReplay,
		fxSink: ActionWouldReplay, fxGone: ActionRefused, fxNoTopic: ActionRefused,
	}
	if got := actions(t, fx, rep); !mapsEqual(got, wantDry) {
		t.Errorf("dry run actions = %v, want %v", got, wantDry)
	}
	if !rep.DryRun {
		t.Error("report of a dry run says it was not")
	}
	if n := len(readTopic(t, k, testRaw)) + len(readTopic(t, k, testNormalized)); n != 0 {
		t.Errorf("dry run wrote %d records", n)
	}
	if readTopic(t, k, ReplayedTopic(testDLQ)) != nil {
		t.Error("dry run created the replayed topic")
	}

	// The replay writes one record per original record.
	rep, err = q.Replay(ctx, Filter{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]Action{
		fxEdge: ActionRefused, fxRange: ActionReplayed, fxStale: ActionReplayed, fxCRC: ActionReplayed,
		fxSink: ActionReplayed, fxGone: ActionRefused, fxNoTopic: ActionRefused,
	}
	if got := actions(t, fx, rep); !mapsEqual(got, want) {
		t.Errorf("replay actions = %v, want %v", got, want)
	}
	for _, it := range rep.Items {
		if it.Action == ActionReplayed && (it.Target == "" || !it.ReplayedAt.Equal(now)) {
			t.Errorf("replayed item %s: target %q at %v", it.Record.Coordinates(), it.Target, it.ReplayedAt)
		}
	}
	raw := readTopic(t, k, testRaw)
	if len(raw) != 2 {
		t.Fatalf("raw topic holds %d records, want 2 (device 102's package once, 103's bytes)", len(raw))
	}
	for _, m := range raw {
		var src int
		switch string(m.Key) {
		case "102":
			src = fxRange
			if string(m.Value) != string(fx.pkg) {
				t.Error("device 102's package changed on replay")
			}
		case "103":
			src = fxCRC
		default:
			t.Fatalf("unexpected key %q on the raw topic", m.Key)
		}
		if want := topology.Partition(m.Key, 2); m.Partition != want {
			t.Errorf("key %s replayed to partition %d, want %d", m.Key, m.Partition, want)
		}
		h := headerMap(t, m)
		if h[HeaderReplay] != testDLQ+"/"+fx.coords[src] || h[HeaderAttempts] != "1" || h[HeaderReplayGroup] != "t.decode" {
			t.Errorf("key %s: headers %v", m.Key, h)
		}
		if h[HeaderFirstFailure] != strconv.FormatInt(fx.envs[src].FirstFailure.UnixMilli(), 10) {
			t.Errorf("key %s: first failure header %q", m.Key, h[HeaderFirstFailure])
		}
		if src == fxRange && (h["watershed-received-ms"] != "1773500000000" || h["watershed-edge"] != "e1") {
			t.Errorf("original headers lost: %v", h)
		}
		if !m.Timestamp.Equal(now) {
			t.Errorf("replayed record's time %v, want the replay time %v", m.Timestamp, now)
		}
	}
	norm := readTopic(t, k, testNormalized)
	if len(norm) != 1 {
		t.Fatalf("normalized topic holds %d records, want 1", len(norm))
	}
	h := headerMap(t, norm[0])
	wantH := map[string]string{
		"x-trace":          "abc",
		HeaderReplay:       testDLQ + "/" + fx.coords[fxSink],
		HeaderAttempts:     "3",
		HeaderFirstFailure: strconv.FormatInt(at(150*time.Minute).UnixMilli(), 10),
		HeaderReplayGroup:  "t.sink",
	}
	if !mapsEqual(h, wantH) {
		t.Errorf("sink replay headers = %v, want %v", h, wantH)
	}
	if string(norm[0].Key) != "102" || string(norm[0].Value) != "normalized readings" {
		t.Errorf("sink replay = %q %q", norm[0].Key, norm[0].Value)
	}
	marks := readTopic(t, k, ReplayedTopic(testDLQ))
	var keys []string
	for _, m := range marks {
		keys = append(keys, string(m.Key))
		if string(m.Value) != now.Format(time.RFC3339Nano) {
			t.Errorf("replayed mark %s = %q", m.Key, m.Value)
		}
	}
	slices.Sort(keys)
	wantKeys := []string{fx.coords[fxRange], fx.coords[fxStale], fx.coords[fxCRC], fx.coords[fxSink]}
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("replayed marks %v, want %v", keys, wantKeys)
	}

	// Replaying again skips them: once.
	rep, err = q.Replay(ctx, Filter{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want = map[int]Action{
		fxEdge: ActionRefused, fxRange: ActionAlreadyReplayed, fxStale: ActionAlreadyReplayed, fxCRC: ActionAlreadyReplayed,
		fxSink: ActionAlreadyReplayed, fxGone: ActionRefused, fxNoTopic: ActionRefused,
	}
	if got := actions(t, fx, rep); !mapsEqual(got, want) {
		t.Errorf("second replay actions = %v, want %v", got, want)
	}
	if n := len(readTopic(t, k, testRaw)) + len(readTopic(t, k, testNormalized)); n != 3 {
		t.Errorf("second replay wrote records: %d now, want 3", n)
	}

	// Edge rejections go with IncludeEdge, without a group header.
	withEdge := opts
	withEdge.IncludeEdge = true
	rep, err = q.Replay(ctx, Filter{Stages: []string{"edge"}}, withEdge)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(t, fx, rep); !mapsEqual(got, map[int]Action{fxEdge: ActionReplayed}) {
		t.Errorf("edge replay actions = %v", got)
	}
	raw = readTopic(t, k, testRaw)
	if len(raw) != 3 {
		t.Fatalf("raw topic holds %d records after the edge replay, want 3", len(raw))
	}
	for _, m := range raw {
		if string(m.Key) != "101" {
			continue
		}
		h := headerMap(t, m)
		if _, ok := h[HeaderReplayGroup]; ok || h[HeaderAttempts] != "1" || h[HeaderReplay] != testDLQ+"/"+fx.coords[fxEdge] {
			t.Errorf("edge replay headers %v", h)
		}
	}
}

// TestReplayOfAFailedReplay replays a dead letter that came back after a
// replay: a new dead letter of the same original record is replayed (its
// DLQ coordinates are new), with its raised attempt count.
func TestReplayOfAFailedReplay(t *testing.T) {
	k := startCluster(t)
	fx := writeFixture(t, k)
	q := openQueue(t, k)
	ctx := context.Background()
	if _, err := q.Replay(ctx, Filter{Reason: "header_crc"}, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	// The framework dead-letters the replayed record again: the new
	// envelope names the replayed record and counts 2 attempts.
	raw := readTopic(t, k, testRaw)
	if len(raw) != 1 {
		t.Fatalf("raw holds %d records", len(raw))
	}
	again := fx.envs[fxCRC]
	again.Partition, again.Offset, again.Attempts = raw[0].Partition, raw[0].Offset, 2
	again.Headers = nil
	for _, h := range raw[0].Headers {
		again.Headers = append(again.Headers, records.Header{Key: string(h.Key), Value: h.Value})
	}
	coords := writeEnvelope(t, k, again)

	rep, err := q.Replay(ctx, Filter{Reason: "header_crc"}, ReplayOptions{MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(ActionReplayed) != 1 || rep.Count(ActionAlreadyReplayed) != 1 {
		t.Fatalf("report %+v", rep.Items)
	}
	raw = readTopic(t, k, testRaw)
	if len(raw) != 2 {
		t.Fatalf("raw holds %d records, want 2", len(raw))
	}
	h := headerMap(t, raw[1])
	if h[HeaderAttempts] != "2" || h[HeaderReplay] != testDLQ+"/"+coords {
		t.Errorf("second replay headers %v", h)
	}

	// At the attempt limit the next one is refused.
	again.Partition, again.Offset, again.Attempts = raw[1].Partition, raw[1].Offset, 3
	writeEnvelope(t, k, again)
	rep, err = q.Replay(ctx, Filter{Reason: "header_crc"}, ReplayOptions{MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(ActionRefused) != 1 || rep.Count(ActionAlreadyReplayed) != 2 || rep.Count(ActionReplayed) != 0 {
		t.Errorf("report at the attempt limit: %+v", rep.Items)
	}
}

func TestDepthCollector(t *testing.T) {
	k := startCluster(t)
	fx := writeFixture(t, k)
	c := NewDepthCollector(k, testDLQ)
	defer c.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	depth := func() (map[[2]string]float64, float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[[2]string]float64{}
		age := -1.0
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch mf.GetName() {
				case "watershed_dlq_records":
					var l [2]string
					for _, lp := range m.GetLabel() {
						if lp.GetName() == "reason" {
							l[0] = lp.GetValue()
						} else {
							l[1] = lp.GetValue()
						}
					}
					out[l] = m.GetGauge().GetValue()
				case "watershed_dlq_oldest_age_seconds":
					age = m.GetGauge().GetValue()
				}
			}
		}
		return out, age
	}
	got, age := depth()
	want := map[[2]string]float64{
		{"bad_flags", "edge"}: 1, {"out_of_range", "t.decode"}: 1, {"stale_timestamp", "t.decode"}: 1,
		{"header_crc", "t.decode"}: 1, {"sink_refused", "t.sink"}: 1, {"callback_error", "t.alerts"}: 1,
		{"panic", "t.dedupe"}: 1, {UndecodableReason, "unknown"}: 1,
	}
	if !mapsEqual(got, want) {
		t.Errorf("depth = %v, want %v", got, want)
	}
	// The oldest failure is at(0), in 2026: its age is at least the time
	// since then.
	if min := time.Since(at(0)).Seconds(); age < min-1 {
		t.Errorf("oldest age %v, want at least %v", age, min)
	}

	// New records are read incrementally.
	writeEnvelope(t, k, fx.envs[fxCRC])
	writeEnvelope(t, k, fx.envs[fxSink])
	got, _ = depth()
	want[[2]string{"header_crc", "t.decode"}] = 2
	want[[2]string{"sink_refused", "t.sink"}] = 2
	if !mapsEqual(got, want) {
		t.Errorf("depth after two more = %v, want %v", got, want)
	}
	got, _ = depth()
	if !mapsEqual(got, want) {
		t.Errorf("depth of an unchanged topic = %v, want %v", got, want)
	}
}

func TestDepthCollectorOfAnEmptyTopic(t *testing.T) {
	k := startCluster(t)
	c := NewDepthCollector(k, testDLQ)
	defer c.Close()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	n := 0
	for m := range ch {
		n++
		if d := m.Desc().String(); d != oldestDesc.String() {
			t.Errorf("empty topic reports %s", d)
		}
	}
	if n != 1 {
		t.Errorf("empty topic reports %d metrics, want the oldest age alone", n)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// writeEnvelope writes one envelope to the test dead-letter topic and
// returns its "partition/offset".
func writeEnvelope(t *testing.T, k topology.Kafka, e records.Envelope) string {
	t.Helper()
	p, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b, err := records.EnvelopeCodec{}.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: testDLQ, Key: sarama.ByteEncoder(e.Key), Value: sarama.ByteEncoder(b)})
	if err != nil {
		t.Fatal(err)
	}
	return coordinates(part, off)
}
