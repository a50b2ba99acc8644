package records

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
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

// A version 1 record (written by the build before version 2, of
// sampleSummaryAcc) still decodes to the same aggregate, and is written
// again as version 2.
func TestSummaryAccReadsVersion1(t *testing.T) {
	v1, err := hex.DecodeString("012a8080a7c6f23280dd82c8f232079180a7c6f232e887a7c6f232010402039180a7c6f2320000000980fccbe907fed0dcfc01e01b000000000a80eaade90782d1dcfc0100d70700000001013fd555555555555500f02e0300000000000000038000000000000000ffffffffffffffff")
	if err != nil {
		t.Fatal(err)
	}
	got, err := SummaryAccCodec{}.Decode(v1)
	if want := sampleSummaryAcc(); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("version 1: %+v, %v\nwant %+v", got, err, want)
	}
	if b, _ := (SummaryAccCodec{}).Encode(got); b[0] != summaryAccVersion || len(b) >= len(v1) {
		t.Errorf("written again as version %d in %d bytes (version 1: %d)", b[0], len(b), len(v1))
	}
}

// A device's hour of fixes a second apart along a track (what the
// windows changelog carries with every record) takes at most 12 bytes a
// fix, and round-trips exactly; so does a window whose fixes jump about,
// with values that have no compact form among them.
func TestSummaryAccFixesAreSmall(t *testing.T) {
	track := SummaryAcc{DeviceID: 7, WindowStartMs: 1748736000000, WindowEndMs: 1748736000000 + SummaryWindowMs}
	for i := range 3600 {
		track.Fixes = append(track.Fixes, Fix{TimeMs: track.WindowStartMs + uint64(i)*1000, ContentCRC: uint32(i * 7919),
			LatDeg: float64(481000000+i*2700) / 1e7, LonDeg: float64(115000000-i*1900) / 1e7, SpeedKmh: float64(800+i%40) / 10})
	}
	b, err := SummaryAccCodec{}.Encode(track)
	if err != nil {
		t.Fatal(err)
	}
	if per := float64(len(b)) / 3600; per > 12 {
		t.Errorf("%.1f bytes a fix", per)
	}
	jumpy := track
	jumpy.Fixes = append([]Fix(nil), track.Fixes[:50]...)
	for i := range jumpy.Fixes {
		if i%2 == 1 {
			jumpy.Fixes[i].LatDeg, jumpy.Fixes[i].LonDeg = -jumpy.Fixes[i].LatDeg, 179.9999999
		}
		if i%7 == 3 {
			jumpy.Fixes[i].LonDeg, jumpy.Fixes[i].SpeedKmh = 1.0/3, math.Copysign(0, -1)
		}
	}
	for _, a := range []SummaryAcc{track, jumpy} {
		b, _ := SummaryAccCodec{}.Encode(a)
		got, err := SummaryAccCodec{}.Decode(b)
		if err != nil || len(got.Fixes) != len(a.Fixes) {
			t.Fatalf("round trip: %d fixes, %v", len(got.Fixes), err)
		}
		for i := range got.Fixes {
			if x, y := got.Fixes[i], a.Fixes[i]; CompareFix(x, y) != 0 {
				t.Fatalf("fix %d: %+v, want %+v", i, x, y)
			}
		}
	}
}
