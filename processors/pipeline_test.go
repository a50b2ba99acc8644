package processors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// memStore is an in-memory sinks.Store keyed by message identity, for the
// pipeline's logic tests; the real stores have their own conformance suite.
type memStore struct {
	mu   sync.Mutex
	rows map[[3]uint64]records.Reading
	// failures is the number of writes still to fail as unavailable.
	failures int
	// refuse makes every write fail for good.
	refuse bool
}

func newMemStore() *memStore { return &memStore{rows: map[[3]uint64]records.Reading{}} }

func (s *memStore) Write(_ context.Context, rs []records.Reading) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return fmt.Errorf("store down: %w", sinks.ErrUnavailable)
	}
	if s.refuse {
		return errors.New("row rejected by the schema")
	}
	for _, r := range rs {
		s.rows[[3]uint64{r.DeviceID, r.TimeMs, uint64(r.ContentCRC)}] = r
	}
	return nil
}

func (s *memStore) Readings(_ context.Context, q sinks.Query) ([]records.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []records.Reading
	for k, r := range s.rows {
		if k[0] == q.DeviceID {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *memStore) Close() error { return nil }

// Ping answers like a store that is down while writes fail.
func (s *memStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		return sinks.ErrUnavailable
	}
	return nil
}

const (
	device   = 4711
	baseTime = 1_763_900_000_000 // 2025-11-23
)

var received = time.UnixMilli(baseTime + 60_000)

type fixture struct {
	t     *testing.T
	p     *processors.Pipeline
	d     *topologytest.Driver
	store *memStore
}

func newFixture(t *testing.T, cfg processors.Config) *fixture {
	store := newMemStore()
	cfg.Now = func() time.Time { return received }
	p := processors.New(cfg)
	d := topologytest.NewWith(t, p.Topology, topologytest.Options{Resources: []topology.Provided{topology.Provide(processors.Store, sinks.Store(store))}})
	// The wall clock is the packages' receipt: no device is silent unless
	// a test moves it on.
	d.SetWall(received)
	return &fixture{t: t, p: p, d: d, store: store}
}

// send delivers a package to the raw topic as the edge would.
func (f *fixture) send(pkg []byte) {
	f.t.Helper()
	f.d.SendRaw(f.p.Raw.Name(), strconv.Itoa(device), pkg,
		topology.Header{Key: edge.HeaderReceivedMs, Value: []byte(strconv.FormatInt(received.UnixMilli(), 10))})
}

func (f *fixture) state() records.DeviceState {
	f.t.Helper()
	st, ok := topologytest.TableValue(f.d, f.p.DeviceState, strconv.Itoa(device))
	if !ok {
		f.t.Fatal("no device state")
	}
	return st
}

func encode(t *testing.T, base uint64, seq uint32, msgs ...protocol.Message) []byte {
	t.Helper()
	b, err := protocol.Encode(protocol.Header{Version: 2, Flags: protocol.FlagSnappy, DeviceID: device, PackageSeq: seq, BaseTimeMs: base, Firmware: 0x0102}, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gps(at uint64, lat int32) protocol.Message {
	return protocol.Message{Type: protocol.TypeGPS, TimeMs: at, LatE7: lat, LonE7: 134_000_000, SpeedDkmh: 500, HeadingDeg: 90, HdopD: 9, Satellites: 8}
}

func engine(at uint64, coolantC int) protocol.Message {
	return protocol.Message{Type: protocol.TypeEngine, TimeMs: at, RPM: 2000, CoolantRaw: uint8(coolantC + 40), FuelPct: 50}
}

func event(at uint64, code, severity uint8) protocol.Message {
	return protocol.Message{Type: protocol.TypeEvent, TimeMs: at, Code: code, Severity: severity}
}

func TestPipelineCountsEveryOutcome(t *testing.T) {
	f := newFixture(t, processors.Config{})
	a := []protocol.Message{gps(baseTime+1000, 520_000_000), engine(baseTime+2000, 130), event(baseTime+3000, 3, 4)}

	// A first package: three new messages, two alerts.
	f.send(encode(t, baseTime, 1, a...))
	st := f.state()
	if st.Messages != 3 || st.Duplicates != 0 || st.Invalid != 0 || st.LastSeenMs != baseTime+3000 || st.Firmware != 0x0102 || st.Version != 2 {
		t.Fatalf("after the first package: %+v", st)
	}
	alerts := topologytest.Read(f.d, f.p.Alerts)
	if len(alerts) != 2 || alerts[0].Value.Kind != records.AlertCoolant || alerts[1].Value.Kind != records.AlertEvent {
		t.Fatalf("alerts = %+v", alerts)
	}

	// The same package again (a lost ACK): all three are duplicates.
	f.send(encode(t, baseTime, 1, a...))
	// Re-batched under another base time and sequence: duplicates again.
	f.send(encode(t, baseTime+500, 9, a[1], a[2]))
	st = f.state()
	if st.Messages != 3 || st.Duplicates != 5 {
		t.Fatalf("after resends: messages %d duplicates %d, want 3 and 5", st.Messages, st.Duplicates)
	}
	if rows, _ := f.store.Readings(context.Background(), sinks.Query{DeviceID: device}); len(rows) != 3 {
		t.Fatalf("store holds %d rows, want 3", len(rows))
	}
	if n := len(topologytest.Read(f.d, f.p.Alerts)); n != 0 {
		t.Errorf("duplicates raised %d alerts", n)
	}

	// Invalid messages: out of range, stale, from the future. Each is
	// rejected every time it arrives; the valid one beside them is stored.
	bad := []protocol.Message{
		engine(baseTime+4000, 151),
		gps(baseTime+5000, 520_000_000),
		{Type: protocol.TypeEvent, TimeMs: baseTime + 6000, Code: 9, Severity: 1},
	}
	f.send(encode(t, baseTime, 2, bad...))
	f.send(encode(t, baseTime, 2, bad...))
	f.send(encode(t, 1_500_000_000_000, 3, event(1_500_000_000_000, 1, 0)))
	f.send(encode(t, uint64(received.UnixMilli())+5*60_000+1, 4, event(uint64(received.UnixMilli())+5*60_000+1, 1, 0)))
	st = f.state()
	if st.Invalid != 6 || st.Messages != 4 || st.Duplicates != 6 {
		t.Fatalf("after invalid messages: invalid %d messages %d duplicates %d, want 6, 4, 6", st.Invalid, st.Messages, st.Duplicates)
	}

	// A package the decoder rejects whole.
	garbage := []byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff}
	broken := protocol.AppendHeader(nil, protocol.Header{Version: 2, Flags: protocol.FlagSnappy, DeviceID: device,
		BaseTimeMs: baseTime, MessageCount: 1, BodyLen: uint32(len(garbage))})
	f.send(append(broken, garbage...))
	if st = f.state(); st.PackagesRejected != 1 {
		t.Fatalf("packages_rejected = %d, want 1", st.PackagesRejected)
	}

	reasons := map[string]int{}
	for _, e := range f.d.DeadLetters() {
		reasons[e.Reason]++
		if string(e.Key) != strconv.Itoa(device) || e.Stage != "decode" || len(e.Value) == 0 {
			t.Errorf("envelope %+v", e)
		}
	}
	if reasons["out_of_range"] != 4 || reasons["stale_timestamp"] != 1 || reasons["future_timestamp"] != 1 || reasons["bad_compression"] != 1 || len(reasons) != 4 {
		t.Errorf("dead letters by reason = %v", reasons)
	}
}

// A late message is stored and counted but never moves the state back.
func TestLateMessageDoesNotMoveStateBack(t *testing.T) {
	f := newFixture(t, processors.Config{})
	f.send(encode(t, baseTime, 1, gps(baseTime+9000, 100), engine(baseTime+9000, 90)))
	f.send(encode(t, baseTime, 2, gps(baseTime+1000, 200), engine(baseTime+1000, 80)))
	st := f.state()
	if st.Messages != 4 || st.LastSeenMs != baseTime+9000 {
		t.Fatalf("state = %+v", st)
	}
	g, _ := st.LatestOf(protocol.TypeGPS)
	e, _ := st.LatestOf(protocol.TypeEngine)
	if g.TimeMs != baseTime+9000 || g.LatDeg != 100e-7 || e.CoolantC != 90 {
		t.Errorf("latest moved back: gps %+v engine %+v", g, e)
	}
}

// Messages of the same millisecond with different content are distinct;
// an intra-package copy is a duplicate.
func TestSameTimeDifferentContent(t *testing.T) {
	f := newFixture(t, processors.Config{})
	f.send(encode(t, baseTime, 1, gps(baseTime, 1), gps(baseTime, 2), gps(baseTime, 2)))
	st := f.state()
	if st.Messages != 2 || st.Duplicates != 1 {
		t.Fatalf("messages %d duplicates %d, want 2 and 1", st.Messages, st.Duplicates)
	}
}

// The dedupe table stays bounded under a steady stream: buckets older than
// the window are deleted.
func TestDedupeTableStaysBounded(t *testing.T) {
	f := newFixture(t, processors.Config{DedupeWindow: time.Hour, DedupeBucket: 10 * time.Minute})
	step := uint64(5 * 60_000)
	var keys []int
	for i := uint64(0); i < 60; i++ { // five hours, two packages a bucket
		at := baseTime - 5*3600_000 + i*step
		f.send(encode(t, at, uint32(i), gps(at, int32(i))))
		keys = append(keys, len(topologytest.TableKeys(f.d, f.p.Dedupe)))
	}
	// One index entry plus at most window/bucket+1 = 7 bucket entries.
	if m := slices.Max(keys); m > 8 {
		t.Errorf("dedupe table grew to %d entries (sizes %v)", m, keys)
	}
	if st := f.state(); st.Messages != 60 || st.Duplicates != 0 {
		t.Errorf("state = %+v", st)
	}
	// A message inside the window is still recognised.
	at := baseTime - 5*3600_000 + 59*step
	f.send(encode(t, at, 99, gps(at, 59)))
	if st := f.state(); st.Duplicates != 1 {
		t.Errorf("duplicate inside the window not recognised: %+v", st)
	}
}

// While the store is down the sink retries; nothing is lost.
func TestSinkRetriesWhileStoreIsDown(t *testing.T) {
	f := newFixture(t, processors.Config{})
	f.store.mu.Lock()
	f.store.failures = 3
	f.store.mu.Unlock()
	f.send(encode(t, baseTime, 1, gps(baseTime, 5)))
	rows, _ := f.store.Readings(context.Background(), sinks.Query{DeviceID: device})
	if len(rows) != 1 {
		t.Fatalf("rows = %d after the store came back, want 1", len(rows))
	}
	if dl := f.d.DeadLetters(); len(dl) != 0 {
		t.Errorf("outage dead-lettered records: %+v", dl)
	}
}

// A version 2 package whose messages are all invalid still tells the
// device's firmware.
func TestFirmwareFromInvalidPackage(t *testing.T) {
	f := newFixture(t, processors.Config{})
	f.send(encode(t, baseTime, 1, engine(baseTime, 200)))
	st := f.state()
	if st.Firmware != 0x0102 || st.Version != 2 || st.Invalid != 1 || st.Messages != 0 {
		t.Fatalf("state = %+v", st)
	}
}

// A write the store refuses for good goes to the dead-letter topic with
// its reason; the device's state still counts the messages.
func TestSinkRefusedGoesToDeadLetters(t *testing.T) {
	f := newFixture(t, processors.Config{})
	f.store.mu.Lock()
	f.store.refuse = true
	f.store.mu.Unlock()
	f.send(encode(t, baseTime, 1, gps(baseTime, 5), engine(baseTime, 90)))
	dl := f.d.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != "sink_refused" || dl[0].Stage != "sink" || string(dl[0].Key) != strconv.Itoa(device) {
		t.Fatalf("dead letters = %+v", dl)
	}
	if st := f.state(); st.Messages != 2 || st.Invalid != 0 {
		t.Errorf("state = %+v", st)
	}
}

// batch returns the Batch of messages at base+offsets, as the decoder
// would hand it on for the raw record at rawOffset.
func batch(base uint64, rawOffset int64, dups int, offsets ...uint32) records.Batch {
	b := records.Batch{DeviceID: device, PackageSeq: 1, Version: 2, Firmware: 0x0102, BaseTimeMs: base,
		ReceivedMs: received.UnixMilli(), RawOffset: rawOffset, IntraPackageDuplicates: dups}
	for i, o := range offsets {
		m := gps(base+uint64(o), int32(i+1))
		m.OffsetMs = o
		m.ContentCRC = uint32(1000 + i)
		b.Messages = append(b.Messages, m)
	}
	return b
}

// readingsKey identifies the Readings record of a package's part.
type readingsKey struct{ raw, part int64 }

func normalizedByPart(t *testing.T, f *fixture) map[readingsKey]records.Readings {
	t.Helper()
	out := map[readingsKey]records.Readings{}
	for _, r := range topologytest.Read(f.d, f.p.Normalized) {
		k := readingsKey{r.Value.RawOffset, r.Value.Part}
		if _, ok := out[k]; ok {
			t.Fatalf("two records of part %+v", k)
		}
		out[k] = r.Value
	}
	return out
}

// A replayed package (the same raw record handled again after a crash)
// re-emits exactly its first readings, and device state counts it once; a
// resend of its messages in another raw record counts them as duplicates.
func TestReplayedPackageCountsOnce(t *testing.T) {
	// A one-bucket window: a message four buckets behind the package's
	// newest is stored without a check (part -1).
	f := newFixture(t, processors.Config{DedupeWindow: 10 * time.Minute, DedupeBucket: 10 * time.Minute})
	base := uint64(baseTime - baseTime%600_000)
	key := strconv.Itoa(device)
	// Parts: bucket b (2 messages, one repeated in the package), bucket
	// b+1 (1), and -1 (1, 40 minutes behind).
	first := batch(base, 100, 1, 40*60_000, 40*60_000+1000, 50*60_000+1000, 60_000)
	first.Messages[1].ContentCRC = first.Messages[0].ContentCRC // a repeat the codec missed
	first.Messages[1].OffsetMs, first.Messages[1].TimeMs = first.Messages[0].OffsetMs, first.Messages[0].TimeMs

	topologytest.Send(f.d, f.p.Decoded, key, first)
	once := normalizedByPart(t, f)
	st := f.state()
	if st.Messages != 3 || st.Duplicates != 2 {
		t.Fatalf("after the package: messages %d duplicates %d, want 3 and 2", st.Messages, st.Duplicates)
	}
	if len(once) != 3 {
		t.Fatalf("%d parts emitted, want 3: %+v", len(once), once)
	}
	if _, ok := once[readingsKey{100, -1}]; !ok {
		t.Fatalf("no unchecked part: %+v", once)
	}

	topologytest.Send(f.d, f.p.Decoded, key, first) // the replay
	twice := normalizedByPart(t, f)
	if len(twice) != len(once) {
		t.Fatalf("replay emitted %d parts, first pass %d", len(twice), len(once))
	}
	for k, rs := range once {
		again, ok := twice[k]
		if !ok || again.Duplicates != rs.Duplicates || !slices.EqualFunc(again.Items, rs.Items, func(a, b records.Reading) bool { return a == b }) {
			t.Errorf("part %+v: replay emitted %+v, first pass %+v", k, again, rs)
		}
	}
	if st = f.state(); st.Messages != 3 || st.Duplicates != 2 {
		t.Fatalf("after the replay: messages %d duplicates %d, want 3 and 2", st.Messages, st.Duplicates)
	}

	// Two of the messages in another raw record: a resend, duplicates.
	resend := first
	resend.RawOffset, resend.IntraPackageDuplicates = 200, 0
	resend.Messages = []protocol.Message{first.Messages[0], first.Messages[2]}
	topologytest.Send(f.d, f.p.Decoded, key, resend)
	if st = f.state(); st.Messages != 3 || st.Duplicates != 4 {
		t.Fatalf("after a resend: messages %d duplicates %d, want 3 and 4", st.Messages, st.Duplicates)
	}
	// And its replay adds nothing.
	topologytest.Send(f.d, f.p.Decoded, key, resend)
	if st = f.state(); st.Messages != 3 || st.Duplicates != 4 {
		t.Fatalf("after the resend's replay: messages %d duplicates %d, want 3 and 4", st.Messages, st.Duplicates)
	}
}

// A package without an identity (raw offset 0: records of the older
// format) is counted as before: a second copy is all duplicates.
func TestPackageWithoutIdentity(t *testing.T) {
	f := newFixture(t, processors.Config{})
	key := strconv.Itoa(device)
	b := batch(baseTime, 0, 0, 1000, 2000)
	topologytest.Send(f.d, f.p.Decoded, key, b)
	topologytest.Send(f.d, f.p.Decoded, key, b)
	if st := f.state(); st.Messages != 2 || st.Duplicates != 2 {
		t.Fatalf("messages %d duplicates %d, want 2 and 2", st.Messages, st.Duplicates)
	}
}

// Device state applies a Readings record once per package identity (raw
// offset and part); records without one are applied every time.
func TestReplayedReadingsAppliedOnce(t *testing.T) {
	f := newFixture(t, processors.Config{})
	key := strconv.Itoa(device)
	r := records.NewReading(device, &protocol.Message{Type: protocol.TypeBattery, TimeMs: baseTime, Millivolts: 12000})
	rs := records.Readings{DeviceID: device, Items: []records.Reading{r}, Duplicates: 1, RawOffset: 7, Part: 3}
	topologytest.Send(f.d, f.p.Normalized, key, rs)
	topologytest.Send(f.d, f.p.Normalized, key, rs)
	if st := f.state(); st.Messages != 1 || st.Duplicates != 1 {
		t.Fatalf("after a replay: messages %d duplicates %d, want 1 and 1", st.Messages, st.Duplicates)
	}
	other := rs
	other.Part = -1
	topologytest.Send(f.d, f.p.Normalized, key, other)
	if st := f.state(); st.Messages != 2 || st.Duplicates != 2 {
		t.Fatalf("another part: messages %d duplicates %d, want 2 and 2", st.Messages, st.Duplicates)
	}
	old := rs
	old.RawOffset, old.Part = 0, -1
	topologytest.Send(f.d, f.p.Normalized, key, old)
	topologytest.Send(f.d, f.p.Normalized, key, old)
	if st := f.state(); st.Messages != 4 || st.Duplicates != 4 {
		t.Fatalf("without identity: messages %d duplicates %d, want 4 and 4", st.Messages, st.Duplicates)
	}
}

// Device state counts a dead letter once per envelope identity: a decoder
// replay writes the same envelopes again; edge attempts are told apart by
// their time.
func TestReplayedDeadLetterCountedOnce(t *testing.T) {
	f := newFixture(t, processors.Config{})
	key := strconv.Itoa(device)
	e := records.Envelope{Stage: processors.GroupDecode, Reason: protocol.ReasonOutOfRange.String(), Error: "gps message at 5 ms (content crc 00000001): out_of_range",
		Topic: processors.TopicRaw, Partition: 0, Offset: 42, Key: []byte(key), Value: []byte{1}, Timestamp: received, Attempts: 1}
	topologytest.Send(f.d, f.p.DeadLetters, key, e)
	e2 := e
	e2.Attempts, e2.LastFailure = 2, received.Add(time.Minute)
	topologytest.Send(f.d, f.p.DeadLetters, key, e2) // the replay
	if st := f.state(); st.Invalid != 1 {
		t.Fatalf("invalid = %d after a replayed envelope, want 1", st.Invalid)
	}
	other := e
	other.Error = "gps message at 6 ms (content crc 00000002): out_of_range"
	topologytest.Send(f.d, f.p.DeadLetters, key, other)
	if st := f.state(); st.Invalid != 2 {
		t.Fatalf("invalid = %d after another message's envelope, want 2", st.Invalid)
	}

	edgeEnv := records.Envelope{Stage: processors.StageEdge, Reason: protocol.ReasonHeaderCRC.String(), Error: "header crc",
		Topic: processors.TopicRaw, Partition: -1, Offset: -1, Timestamp: received}
	topologytest.Send(f.d, f.p.DeadLetters, key, edgeEnv)
	topologytest.Send(f.d, f.p.DeadLetters, key, edgeEnv)
	edgeEnv.Timestamp = received.Add(time.Millisecond)
	topologytest.Send(f.d, f.p.DeadLetters, key, edgeEnv)
	if st := f.state(); st.PackagesRejected != 2 {
		t.Fatalf("packages_rejected = %d after two edge attempts (one replayed), want 2", st.PackagesRejected)
	}
}
