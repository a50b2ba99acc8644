package records

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

func TestDeviceStateRoundTrip(t *testing.T) {
	s := DeviceState{DeviceID: 1<<64 - 1, Messages: 10, Duplicates: 2, Invalid: 3, PackagesRejected: 1, LastSeenMs: 1700000000123, Version: 2, Firmware: 0x0102}
	s.Observe(Reading{DeviceID: s.DeviceID, TimeMs: 5, Type: protocol.TypeGPS, LatDeg: 52.5, LonDeg: -13.25, SpeedKmh: 88.8, HeadingDeg: 359, Hdop: 1.2, Satellites: 9})
	s.Observe(Reading{DeviceID: s.DeviceID, TimeMs: 6, Type: protocol.TypeBattery, BatteryV: 12.345})
	s.Observe(Reading{DeviceID: s.DeviceID, TimeMs: 7, Type: protocol.TypeAccel, XG: -1.5, YG: 0.001, ZG: 16})
	s.MarkApplied(ReadingsKey(100, -1))
	s.MarkApplied(1<<64 - 1)
	s.MarkInput(InputSource("telemetry.normalized", 3), 1<<40)
	s.MarkInput(InputSource("telemetry.deadletters", 0), 0)
	s.ReceivedMs, s.Silent, s.SilentAlerts, s.BackAlerts = 1700000000456, true, 3, 2
	s.MarkPackage(1<<40, 2_833_000, 1700000000000, time.Hour)
	s.MarkPackage(1<<40, -1, 1700000000000, time.Hour)
	s.MarkPackage(1<<40-77, 2_832_999, 1699999990000, time.Hour)
	s.Back, s.BackSinceMs = InputOffset{Source: InputSource("telemetry.normalized", 3), Offset: 12}, 1699999000000
	s.Silenced, s.SilentSinceMs, s.SilentAtMs = InputOffset{Source: InputSource("loop", 3), Offset: 0}, 1699999000000, 1699999600000
	b, err := DeviceStateCodec{}.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DeviceStateCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
	if got.Latest[0].Type != protocol.TypeGPS || got.Latest[1].Type != protocol.TypeAccel || got.Latest[2].Type != protocol.TypeBattery {
		t.Errorf("latest not ordered by type: %+v", got.Latest)
	}
}

// A late reading never replaces a newer one.
func TestDeviceStateObserveKeepsNewest(t *testing.T) {
	var s DeviceState
	if !s.Observe(Reading{TimeMs: 100, Type: protocol.TypeEngine, RPM: 1000}) {
		t.Fatal("first reading not taken")
	}
	if s.Observe(Reading{TimeMs: 99, Type: protocol.TypeEngine, RPM: 5}) {
		t.Error("late reading taken")
	}
	if !s.Observe(Reading{TimeMs: 100, Type: protocol.TypeEngine, RPM: 2000}) {
		t.Error("reading of equal time not taken")
	}
	if r, _ := s.LatestOf(protocol.TypeEngine); r.RPM != 2000 || len(s.Latest) != 1 {
		t.Errorf("latest = %+v", s.Latest)
	}
	if _, ok := s.LatestOf(protocol.TypeGPS); ok {
		t.Error("gps reported without one")
	}
}

// A version 1 state still decodes, with nothing applied.
func TestDeviceStateDecodesVersion1(t *testing.T) {
	// Version 1: device 7, messages 3, duplicates 1, invalid 0, rejected 0,
	// last seen 9, version 2, firmware 0x0102, no latest readings.
	s, err := DeviceStateCodec{}.Decode([]byte{1, 7, 3, 1, 0, 0, 9, 2, 0x82, 0x02, 0})
	if err != nil {
		t.Fatal(err)
	}
	want := DeviceState{DeviceID: 7, Messages: 3, Duplicates: 1, LastSeenMs: 9, Version: 2, Firmware: 0x0102}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

// A version 2 state still decodes, with its applied keys and no inputs.
func TestDeviceStateDecodesVersion2(t *testing.T) {
	s, err := DeviceStateCodec{}.Decode([]byte{2, 7, 3, 1, 0, 0, 9, 2, 0x82, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5})
	if err != nil {
		t.Fatal(err)
	}
	want := DeviceState{DeviceID: 7, Messages: 3, Duplicates: 1, LastSeenMs: 9, Version: 2, Firmware: 0x0102, Applied: []uint64{5}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

// A record at or below the newest offset applied from its input partition
// is a replay, whatever the number of records in between; other partitions
// are told apart, and the least recently updated one is forgotten first.
func TestDeviceStateReplayedByInputOffset(t *testing.T) {
	var s DeviceState
	norm, dead := InputSource("n", 0), InputSource("d", 0)
	if norm == InputSource("n", 1) || norm == dead {
		t.Fatal("distinct partitions share a source")
	}
	for off := range int64(10 * AppliedLimit) {
		if s.Replayed(norm, off) {
			t.Fatalf("offset %d taken for a replay before it was applied", off)
		}
		s.MarkInput(norm, off)
	}
	if !s.Replayed(norm, 0) || !s.Replayed(norm, 10*AppliedLimit-1) || s.Replayed(norm, 10*AppliedLimit) {
		t.Error("not every applied offset, and only those, is a replay")
	}
	if s.Replayed(dead, 0) {
		t.Error("another partition's record taken for a replay")
	}
	s.MarkInput(dead, 5)
	s.MarkInput(norm, 3) // never moves back
	if !s.Replayed(norm, 10*AppliedLimit-1) {
		t.Error("an older offset moved the input back")
	}
	for i := range int32(InputsLimit - 1) {
		s.MarkInput(InputSource("r", i), 1)
	}
	if len(s.Inputs) != InputsLimit || s.Replayed(dead, 5) || !s.Replayed(norm, 1) {
		t.Errorf("inputs %+v: want %d, the least recently updated (d) forgotten", s.Inputs, InputsLimit)
	}
}

// A version 2 state (before the silence fields) still decodes, and a
// silent flag other than 0 or 1 is corrupt.
func TestDeviceStateVersions2And3(t *testing.T) {
	v2 := []byte{2, 7, 3, 1, 0, 0, 9, 2, 0x82, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5}
	s, err := DeviceStateCodec{}.Decode(v2)
	want := DeviceState{DeviceID: 7, Messages: 3, Duplicates: 1, LastSeenMs: 9, Version: 2, Firmware: 0x0102, Applied: []uint64{5}}
	if err != nil || !reflect.DeepEqual(s, want) {
		t.Fatalf("version 2: %+v, %v; want %+v", s, err, want)
	}
	b, _ := DeviceStateCodec{}.Encode(DeviceState{DeviceID: 7, Silent: true})
	quiet, _ := DeviceStateCodec{}.Encode(DeviceState{DeviceID: 7})
	at := slices.IndexFunc(b, func(c byte) bool { return c == 1 })
	if len(b) != len(quiet) || quiet[at] != 0 || !bytes.Equal(b[at+1:], quiet[at+1:]) {
		t.Fatalf("bad test: silent byte at %d of % x", at, b)
	}
	b[at] = 2
	if _, err := (DeviceStateCodec{}).Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("silent byte 2: error %v, want corrupt", err)
	}
}

// A version 3 state (before the applied packages and the alerts' inputs)
// still decodes, and its applied keys still recognise a package.
func TestDeviceStateDecodesVersion3(t *testing.T) {
	want := DeviceState{DeviceID: 7, Messages: 3, ReceivedMs: 1_700_000_000_000, Silent: true, SilentAlerts: 1, Applied: []uint64{ReadingsKey(5, -1)}}
	want.MarkInput(InputSource("n", 0), 40)
	b, _ := DeviceStateCodec{}.Encode(want)
	// Version 4's tail of an empty state: no packages (1 byte), two
	// inputs (9 bytes each) with a time (1 byte) and two times.
	v3 := append([]byte{3}, b[1:len(b)-22]...)
	s, err := DeviceStateCodec{}.Decode(v3)
	if err != nil || !reflect.DeepEqual(s, want) {
		t.Fatalf("version 3: %+v, %v; want %+v", s, err, want)
	}
	if !s.PackageApplied(5, -1) || s.PackageApplied(6, -1) {
		t.Error("a version 3 state's applied keys do not recognise its packages")
	}
}

// The applied keys are bounded, oldest forgotten first.
func TestDeviceStateAppliedIsBounded(t *testing.T) {
	var s DeviceState
	for i := range int64(AppliedLimit + 10) {
		s.MarkApplied(ReadingsKey(i+1, -1))
	}
	if len(s.Applied) != AppliedLimit {
		t.Fatalf("%d keys kept, want %d", len(s.Applied), AppliedLimit)
	}
	if s.WasApplied(ReadingsKey(10, -1)) || !s.WasApplied(ReadingsKey(11, -1)) || !s.WasApplied(ReadingsKey(AppliedLimit+10, -1)) {
		t.Error("not the newest keys kept")
	}
	b, _ := DeviceStateCodec{}.Encode(s)
	t.Logf("a state with %d applied keys takes %d bytes", len(s.Applied), len(b))
}

// Keys tell records apart by identity only.
func TestRecordKeys(t *testing.T) {
	if ReadingsKey(5, -1) == ReadingsKey(5, 0) || ReadingsKey(5, 1) == ReadingsKey(6, 1) {
		t.Error("distinct readings share a key")
	}
	at := time.Date(2025, 11, 23, 12, 0, 0, 0, time.UTC)
	e := Envelope{Stage: "decode", Reason: "out_of_range", Error: "gps message at 5 ms", Topic: "telemetry.raw", Partition: 2, Offset: 40,
		Timestamp: at, Attempts: 1, FirstFailure: at, LastFailure: at}
	again := e
	again.Attempts, again.FirstFailure, again.LastFailure = 2, at.Add(time.Minute), at.Add(time.Minute)
	if EnvelopeKey(&e) != EnvelopeKey(&again) {
		t.Error("a replayed envelope has another key")
	}
	other := e
	other.Error = "gps message at 6 ms"
	if EnvelopeKey(&e) == EnvelopeKey(&other) {
		t.Error("two messages' envelopes share a key")
	}
	edge1 := Envelope{Stage: "edge", Reason: "header_crc", Topic: "telemetry.raw", Partition: -1, Offset: -1, Timestamp: at}
	edge2 := edge1
	edge2.Timestamp = at.Add(time.Millisecond)
	if EnvelopeKey(&edge1) == EnvelopeKey(&edge2) {
		t.Error("two edge attempts share a key")
	}
	if ReadingsKey(0, 0) == EnvelopeKey(&Envelope{}) {
		t.Error("kinds share a key")
	}
}

// The smallest latest readings (a time under 128 ms, no fields) take 7
// bytes each, as in a Readings record: the decoder's bound on their count
// must not refuse what the encoder writes (fuzzing found it did).
func TestDeviceStateSmallestLatest(t *testing.T) {
	s := DeviceState{DeviceID: 48, Latest: []Reading{{DeviceID: 48, TimeMs: 1, Type: protocol.TypeEvent}, {DeviceID: 48, TimeMs: 2, Type: protocol.TypeEvent}}}
	b, err := DeviceStateCodec{}.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DeviceStateCodec{}.Decode(b)
	if err != nil {
		t.Fatalf("decode what Encode wrote: %v", err)
	}
	if !sameState(got, s) {
		t.Fatalf("got %+v, want %+v", got, s)
	}
}

func FuzzDeviceStateDecode(f *testing.F) {
	b, _ := DeviceStateCodec{}.Encode(DeviceState{DeviceID: 3, Messages: 1, Latest: []Reading{{DeviceID: 3, TimeMs: 9, Type: protocol.TypeEvent, EventCode: 3, Severity: 4}}})
	f.Add(b)
	f.Add([]byte{1, 7, 3, 1, 0, 0, 9, 2, 0x82, 0x02, 0})
	b, _ = DeviceStateCodec{}.Encode(DeviceState{DeviceID: 3, Applied: []uint64{1, 2}})
	f.Add(b)
	b, _ = DeviceStateCodec{}.Encode(DeviceState{DeviceID: 3, Inputs: []InputOffset{{Source: 1, Offset: -1}, {Source: 2, Offset: 1 << 50}}})
	b, _ = DeviceStateCodec{}.Encode(DeviceState{DeviceID: 3, ReceivedMs: -4, Silent: true, SilentAlerts: 2, BackAlerts: 1})
	f.Add(b)
	withPackages := DeviceState{DeviceID: 3, Back: InputOffset{Source: 9, Offset: 4}, BackSinceMs: 5, Silenced: InputOffset{Source: 8, Offset: -1}, SilentAtMs: 7}
	for raw := range int64(70) {
		withPackages.MarkPackage(raw*3, raw%2-1, raw*700, time.Minute)
	}
	b, _ = DeviceStateCodec{}.Encode(withPackages)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var c DeviceStateCodec
		fuzzRoundTrip(t, b, c.Decode, c.Encode, sameState)
	})
}

// sameState compares states with their readings' floats bit for bit (a
// reading decoded from arbitrary bytes may hold a NaN, which DeepEqual
// never calls equal).
func sameState(a, b DeviceState) bool {
	la, lb := a.Latest, b.Latest
	a.Latest, b.Latest = nil, nil
	if !reflect.DeepEqual(a, b) || len(la) != len(lb) {
		return false
	}
	for i := range la {
		if !sameReading(la[i], lb[i]) {
			return false
		}
	}
	return true
}
