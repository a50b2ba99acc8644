package records

import (
	"errors"
	"reflect"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
)

func sampleSummary() Summary {
	return Summary{DeviceID: 1<<64 - 1, WindowStartMs: 1748736000000, WindowEndMs: 1748736000000 + SummaryWindowMs,
		Messages: 1234, GPSFixes: 300, DistanceM: 18234.5, MaxSpeedKmh: 121.25, AvgSpeedKmh: 54.125,
		Harsh:   map[protocol.EventCode]uint64{protocol.EventHarshCorner: 1, protocol.EventHarshBrake: 4},
		FirstMs: 1748736000017, LastMs: 1748739599003}
}

func TestSummaryRoundTrip(t *testing.T) {
	for _, s := range []Summary{sampleSummary(), {DeviceID: 7, WindowStartMs: 0, WindowEndMs: SummaryWindowMs}} {
		b, err := SummaryCodec{}.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := SummaryCodec{}.Decode(b)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("round trip of %+v: %+v, %v", s, got, err)
		}
		for n := range b {
			if _, err := (SummaryCodec{}).Decode(b[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("%d of %d bytes: error %v, want corrupt", n, len(b), err)
			}
		}
		if _, err := (SummaryCodec{}).Decode(append(b, 0)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("trailing byte: error %v, want corrupt", err)
		}
	}
}

// The encoding is canonical: harsh kinds in ascending order, whatever the
// map's iteration order, and a decoder refuses any other.
func TestSummaryHarshOrder(t *testing.T) {
	s := sampleSummary()
	first, _ := SummaryCodec{}.Encode(s)
	for range 20 {
		if b, _ := (SummaryCodec{}).Encode(s); string(b) != string(first) {
			t.Fatal("encoding depends on map order")
		}
	}
	// The last 4 bytes are kind 3 (count 4) then kind 5 (count 1): swap them.
	swapped := append([]byte(nil), first[:len(first)-4]...)
	swapped = append(swapped, first[len(first)-2:]...)
	swapped = append(swapped, first[len(first)-4:len(first)-2]...)
	if first[len(first)-4] != byte(protocol.EventHarshBrake) || first[len(first)-2] != byte(protocol.EventHarshCorner) {
		t.Fatalf("bad test: tail % x", first[len(first)-4:])
	}
	if _, err := (SummaryCodec{}).Decode(swapped); !errors.Is(err, ErrCorrupt) {
		t.Errorf("kinds out of order: error %v, want corrupt", err)
	}
	dup := append(append([]byte(nil), first[:len(first)-2]...), first[len(first)-4:len(first)-2]...)
	if _, err := (SummaryCodec{}).Decode(dup); !errors.Is(err, ErrCorrupt) {
		t.Errorf("kind twice: error %v, want corrupt", err)
	}
}

func FuzzSummaryDecode(f *testing.F) {
	b, _ := SummaryCodec{}.Encode(sampleSummary())
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := SummaryCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, _ := SummaryCodec{}.Encode(s)
		back, err := SummaryCodec{}.Decode(again)
		if err != nil || (!reflect.DeepEqual(back, s) && s.DistanceM == s.DistanceM && s.MaxSpeedKmh == s.MaxSpeedKmh && s.AvgSpeedKmh == s.AvgSpeedKmh) {
			t.Fatalf("re-encoded summary differs: %+v vs %+v (%v)", back, s, err)
		}
	})
}
