package records

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
)

func sampleSummaryAcc() SummaryAcc {
	return SummaryAcc{DeviceID: 42, WindowStartMs: 1748736000000, WindowEndMs: 1748736000000 + SummaryWindowMs,
		Messages: 7, FirstMs: 1748736000017, LastMs: 1748736001000,
		Harsh: map[protocol.EventCode]uint64{protocol.EventHarshAccel: 2},
		Fixes: []Fix{
			{TimeMs: 1748736000017, ContentCRC: 9, LatDeg: 52.5123456, LonDeg: -13.25, SpeedKmh: 88.8},
			{TimeMs: 1748736000017, ContentCRC: 10, LatDeg: 52.5, LonDeg: -13.2500001, SpeedKmh: 0},
			{TimeMs: 1748736001000, ContentCRC: 1, LatDeg: 1.0 / 3, LonDeg: 0, SpeedKmh: 150},
		},
		Applied: []uint64{3, 1 << 63, 1<<64 - 1},
	}
}

func TestSummaryAccRoundTrip(t *testing.T) {
	for _, a := range []SummaryAcc{sampleSummaryAcc(), {DeviceID: 1, WindowEndMs: SummaryWindowMs}} {
		b, err := SummaryAccCodec{}.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := SummaryAccCodec{}.Decode(b)
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("round trip of %+v:\n got %+v, %v", a, got, err)
		}
		for n := range b {
			if _, err := (SummaryAccCodec{}).Decode(b[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("%d of %d bytes: error %v, want corrupt", n, len(b), err)
			}
		}
		if _, err := (SummaryAccCodec{}).Decode(append(b, 0)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("trailing byte: error %v, want corrupt", err)
		}
	}
}

// One aggregate has one encoding: Encode sorts fixes and keys given out of
// order, and Decode refuses them out of order.
func TestSummaryAccCanonical(t *testing.T) {
	a := sampleSummaryAcc()
	want, _ := SummaryAccCodec{}.Encode(a)
	shuffled := a
	shuffled.Fixes = []Fix{a.Fixes[2], a.Fixes[0], a.Fixes[1]}
	shuffled.Applied = []uint64{a.Applied[1], a.Applied[2], a.Applied[0]}
	if got, _ := (SummaryAccCodec{}).Encode(shuffled); !bytes.Equal(got, want) {
		t.Fatal("encoding depends on the order of fixes or keys")
	}
	if shuffled.Fixes[0] != a.Fixes[2] {
		t.Fatal("Encode reordered its argument's fixes")
	}
	// The last key (8 bytes) swapped with the one before it.
	swapped := append([]byte(nil), want[:len(want)-16]...)
	swapped = append(append(swapped, want[len(want)-8:]...), want[len(want)-16:len(want)-8]...)
	if _, err := (SummaryAccCodec{}).Decode(swapped); !errors.Is(err, ErrCorrupt) {
		t.Errorf("keys out of order: error %v, want corrupt", err)
	}
	// Two equal fixes are allowed (ties are ordered by value), a later
	// time before an earlier one is not.
	two := SummaryAcc{Fixes: []Fix{{TimeMs: 5, ContentCRC: 1}, {TimeMs: 5, ContentCRC: 1}}}
	b, _ := SummaryAccCodec{}.Encode(two)
	if got, err := (SummaryAccCodec{}).Decode(b); err != nil || len(got.Fixes) != 2 {
		t.Fatalf("equal fixes: %+v, %v", got, err)
	}
	// Two fixes at time 5, crc 2 before crc 1; no harsh kinds, no keys.
	b = []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 5, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	if _, err := (SummaryAccCodec{}).Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("fixes out of order: error %v, want corrupt", err)
	}
	b[13], b[21] = 1, 2
	if _, err := (SummaryAccCodec{}).Decode(b); err != nil {
		t.Errorf("the same fixes in order: %v", err)
	}
}

func FuzzSummaryAccDecode(f *testing.F) {
	b, _ := SummaryAccCodec{}.Encode(sampleSummaryAcc())
	f.Add(b)
	b, _ = SummaryAccCodec{}.Encode(SummaryAcc{DeviceID: 1})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var c SummaryAccCodec
		fuzzRoundTrip(t, b, c.Decode, c.Encode, func(x, y SummaryAcc) bool {
			// Floats decoded from arbitrary bytes may be NaN: compare the
			// canonical encodings.
			bx, _ := c.Encode(x)
			by, _ := c.Encode(y)
			return bytes.Equal(bx, by)
		})
	})
}
