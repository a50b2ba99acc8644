package topology

import (
	"bytes"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
)

func testEnvelope(value []byte) records.Envelope {
	at := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	return records.Envelope{
		Stage: "decode", Reason: "record_len", Error: strings.Repeat("e", 10<<10),
		Topic: "telemetry.raw", Partition: 5, Offset: 123456, Key: []byte("42"), Value: value,
		Headers:   []records.Header{{Key: "watershed-received-ms", Value: []byte("1765054800000")}},
		Timestamp: at, Attempts: 3, FirstFailure: at.Add(time.Second), LastFailure: at.Add(2 * time.Second),
	}
}

// An envelope that does not fit is cut to fit: its reason, stage, origin,
// times and attempts are kept, its value is a prefix of the original and
// marked with the original's length.
func TestEnvelopeCutToFit(t *testing.T) {
	value := make([]byte, 100<<10)
	_, _ = rand.Read(value)
	want := testEnvelope(value)
	const limit = 32 << 10
	b, cut, err := encodeEnvelope(want, limit)
	if err != nil {
		t.Fatal(err)
	}
	if !cut || len(b) > limit {
		t.Fatalf("cut=%v, %d bytes for a limit of %d", cut, len(b), limit)
	}
	got, err := records.EnvelopeCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stage != want.Stage || got.Reason != want.Reason || got.Topic != want.Topic || got.Partition != want.Partition ||
		got.Offset != want.Offset || string(got.Key) != "42" || got.Attempts != want.Attempts ||
		!got.Timestamp.Equal(want.Timestamp) || !got.FirstFailure.Equal(want.FirstFailure) || !got.LastFailure.Equal(want.LastFailure) {
		t.Errorf("fields changed by the cut:\n got %+v\nwant %+v", got, want)
	}
	if len(got.Value) == 0 || len(got.Value) >= len(value) || !bytes.Equal(got.Value, value[:len(got.Value)]) {
		t.Errorf("value: %d bytes, want a shorter non-empty prefix of the %d original bytes", len(got.Value), len(value))
	}
	// The value takes what the rest leaves: nearly the whole limit.
	if len(b) < limit-64 {
		t.Errorf("%d bytes used of %d: the value was cut more than needed", len(b), limit)
	}
	if !strings.HasPrefix(got.Error, "eeee") || len(got.Error) > maxCutError+16 {
		t.Errorf("error text of %d bytes", len(got.Error))
	}
	if len(got.Headers) != 2 || got.Headers[0].Key != "watershed-received-ms" ||
		got.Headers[1].Key != HeaderValueTruncated || string(got.Headers[1].Value) != strconv.Itoa(len(value)) {
		t.Errorf("headers = %+v, want the original and the truncation marker", got.Headers)
	}
}

// An envelope that fits is left whole and unmarked.
func TestEnvelopeThatFitsIsWhole(t *testing.T) {
	want := testEnvelope([]byte("small"))
	b, cut, err := encodeEnvelope(want, 64<<10)
	if err != nil || cut {
		t.Fatalf("cut=%v err=%v", cut, err)
	}
	if !bytes.Equal(b, records.AppendEnvelope(nil, want)) {
		t.Error("an envelope that fits was changed")
	}
}

// Headers too large for any room are dropped, but for the marker, and the
// value is still cut to fit.
func TestEnvelopeCutDropsHugeHeaders(t *testing.T) {
	e := testEnvelope(bytes.Repeat([]byte{7}, 10<<10))
	e.Headers = append(e.Headers, records.Header{Key: "big", Value: make([]byte, 40<<10)})
	const limit = 16 << 10
	b, cut, err := encodeEnvelope(e, limit)
	if err != nil || !cut || len(b) > limit {
		t.Fatalf("cut=%v err=%v len=%d", cut, err, len(b))
	}
	got, err := records.EnvelopeCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Headers) != 1 || got.Headers[0].Key != HeaderValueTruncated || got.Reason != "record_len" || len(got.Value) == 0 {
		t.Errorf("got headers %+v, reason %q, %d value bytes", got.Headers, got.Reason, len(got.Value))
	}
}

// The framework's envelopes are bounded by MaxDeadLetterBytes: the
// envelope of the largest record a producer may send is cut to fit.
func TestNewEnvelopeFitsTheDeadLetterTopic(t *testing.T) {
	value := make([]byte, MaxRecordBytes)
	_, _ = rand.Read(value)
	rec := recordInfo{group: "decode", topic: "telemetry.raw", partition: 1, offset: 9, key: "42", attempt: 1}
	b, cut, err := newEnvelope(&rec, "record_len", nil, value)
	if err != nil {
		t.Fatal(err)
	}
	if !cut || len(b) > MaxDeadLetterBytes {
		t.Fatalf("cut=%v, %d bytes, limit %d", cut, len(b), MaxDeadLetterBytes)
	}
	// A package at the edge's limit and its envelope fit whole.
	b, cut, err = newEnvelope(&rec, "record_len", nil, value[:1048612])
	if err != nil || cut {
		t.Fatalf("the envelope of a largest package was cut (%v) or failed: %v", cut, err)
	}
	if len(b) > MaxDeadLetterBytes {
		t.Fatalf("%d bytes", len(b))
	}
}
