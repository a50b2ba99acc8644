package records

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
)

func randReadings(t testing.TB, r *rand.Rand) Readings {
	p := randPackage(t, r, 1+r.IntN(40))
	rs := Readings{DeviceID: p.Header.DeviceID, Duplicates: r.Uint64N(5000), Version: p.Header.Version,
		Firmware: p.Header.Firmware, ReceivedMs: r.Int64() - r.Int64(), RawOffset: r.Int64N(1 << 40), Part: r.Int64N(1<<32) - 1}
	for i := range p.Messages {
		rs.Items = append(rs.Items, NewReading(rs.DeviceID, &p.Messages[i]))
	}
	// Values that are not wire-derived must survive too.
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0.95, 1e300, math.SmallestNonzeroFloat64, -123.456789}
	for i := range rs.Items {
		if r.IntN(4) == 0 {
			rs.Items[i].Hdop = odd[r.IntN(len(odd))]
			rs.Items[i].XG = r.NormFloat64()
		}
	}
	return rs
}

// sameReading compares bitwise (NaN equals NaN, -0 differs from +0).
func sameReading(a, b Reading) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		if fa.Kind() == reflect.Float64 {
			if math.Float64bits(fa.Float()) != math.Float64bits(fb.Float()) {
				return false
			}
		} else if fa.Interface() != fb.Interface() {
			return false
		}
	}
	return true
}

func sameReadings(a, b Readings) bool {
	if a.DeviceID != b.DeviceID || len(a.Items) != len(b.Items) || a.Duplicates != b.Duplicates ||
		a.Version != b.Version || a.Firmware != b.Firmware || a.ReceivedMs != b.ReceivedMs ||
		a.RawOffset != b.RawOffset || a.Part != b.Part {
		return false
	}
	for i := range a.Items {
		if !sameReading(a.Items[i], b.Items[i]) {
			return false
		}
	}
	return true
}

func TestReadingsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for i := range 500 {
		rs := randReadings(t, r)
		enc, err := ReadingsCodec{}.Encode(rs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadingsCodec{}.Decode(enc)
		if err != nil || !sameReadings(got, rs) {
			t.Fatalf("case %d: %v\n got %+v\nwant %+v", i, err, got, rs)
		}
		for _, one := range rs.Items {
			enc, _ := ReadingCodec{}.Encode(one)
			back, err := ReadingCodec{}.Decode(enc)
			if err != nil || !sameReading(back, one) {
				t.Fatalf("case %d: single reading: %v\n got %+v\nwant %+v", i, err, back, one)
			}
		}
	}
}

func TestNewReadingUnits(t *testing.T) {
	m := protocol.Message{Type: protocol.TypeEngine, TimeMs: 5, RPM: 2350, CoolantRaw: 128, FuelPct: 63}
	r := NewReading(9, &m)
	if r.RPM != 2350 || r.CoolantC != 88 || r.FuelPct != 63 || r.DeviceID != 9 || r.TimeMs != 5 {
		t.Fatalf("%+v", r)
	}
	m = protocol.Message{Type: protocol.TypeGPS, LatE7: -338688000, SpeedDkmh: 873, HdopD: 9}
	r = NewReading(9, &m)
	if r.LatDeg != -33.8688 || r.SpeedKmh != 87.3 || r.Hdop != 0.9 {
		t.Fatalf("%+v", r)
	}
	m = protocol.Message{Type: protocol.TypeAccel, XMg: -312}
	if r := NewReading(9, &m); r.XG != -0.312 {
		t.Fatalf("%+v", r)
	}
	m = protocol.Message{Type: protocol.TypeBattery, Millivolts: 12650}
	if r := NewReading(9, &m); r.BatteryV != 12.65 {
		t.Fatalf("%+v", r)
	}
}

func TestReadingsEncodeRejectsOtherDevice(t *testing.T) {
	rs := Readings{DeviceID: 1, Items: []Reading{{DeviceID: 2}}}
	if _, err := (ReadingsCodec{}).Encode(rs); err == nil {
		t.Fatal("a reading of another device was encoded")
	}
}

func TestReadingsDecodesVersion1(t *testing.T) {
	golden := readGoldenHex(t, "readings-v1.hex")
	got, err := ReadingsCodec{}.Decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := Readings{DeviceID: 4242, Part: -1, Items: []Reading{
		{DeviceID: 4242, TimeMs: 1763900000000, ContentCRC: 0x01020304, Type: protocol.TypeGPS,
			LatDeg: 474979530.0 / 1e7, LonDeg: -703333000.0 / 1e7, SpeedKmh: 87.3, HeadingDeg: 271, Hdop: 0.95, Satellites: 11},
		{DeviceID: 4242, TimeMs: 1763899999750, ContentCRC: 0x05060708, Type: protocol.TypeBattery, BatteryV: 12.65},
	}}
	if !sameReadings(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if readingsVersion == 1 {
		enc, _ := ReadingsCodec{}.Encode(want)
		if !bytes.Equal(enc, golden) {
			t.Fatalf("encoder no longer writes the version 1 layout:\n got %x\nwant %x", enc, golden)
		}
	}
	for n := range len(golden) {
		if _, err := (ReadingsCodec{}).Decode(golden[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

// Version 2 adds the package fields; a version 2 record still decodes,
// without the package's identity.
func TestReadingsVersion2(t *testing.T) {
	want := Readings{DeviceID: 4242, Duplicates: 3, Version: 2, Firmware: 0x0103, ReceivedMs: 1763900000999, Part: -1, Items: []Reading{
		{DeviceID: 4242, TimeMs: 1763900000000, ContentCRC: 0x01020304, Type: protocol.TypeEngine, RPM: 2500, CoolantC: 121, FuelPct: 40},
	}}
	golden := readGoldenHex(t, "readings-v2.hex")
	got, err := ReadingsCodec{}.Decode(golden)
	if err != nil || !sameReadings(got, want) || got.HasIdentity() {
		t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
	}
	if readingsVersion == 2 {
		if enc, _ := (ReadingsCodec{}).Encode(want); !bytes.Equal(enc, golden) {
			t.Fatalf("encoder no longer writes the version 2 layout:\n got %x\nwant %x", enc, golden)
		}
	}
}

// Version 3 adds the package's identity (raw offset and part); a record
// with every field set survives a round trip, and the bytes are pinned by
// a golden file.
func TestReadingsVersion3(t *testing.T) {
	rs := Readings{DeviceID: 4242, Duplicates: 3, Version: 2, Firmware: 0x0103, ReceivedMs: 1763900000999, RawOffset: 123456, Part: -1, Items: []Reading{
		{DeviceID: 4242, TimeMs: 1763900000000, ContentCRC: 0x01020304, Type: protocol.TypeEngine, RPM: 2500, CoolantC: 121, FuelPct: 40},
	}}
	enc, err := ReadingsCodec{}.Encode(rs)
	if err != nil {
		t.Fatal(err)
	}
	golden := readGoldenHex(t, "readings-v3.hex")
	if !bytes.Equal(enc, golden) {
		t.Fatalf("version 3 layout changed:\n got %x\nwant %x", enc, golden)
	}
	got, err := ReadingsCodec{}.Decode(golden)
	if err != nil || !sameReadings(got, rs) || !got.HasIdentity() {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for n := range len(golden) {
		if _, err := (ReadingsCodec{}).Decode(golden[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

func fuzzRoundTrip[T any](t *testing.T, in []byte, dec func([]byte) (T, error), enc func(T) ([]byte, error), same func(a, b T) bool) {
	v, err := dec(in)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("error wraps neither ErrCorrupt nor ErrVersion: %v", err)
		}
		return
	}
	b, err := enc(v)
	if err != nil {
		t.Fatalf("a decoded value does not encode: %v", err)
	}
	again, err := dec(b)
	if err != nil || !same(again, v) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, again, v)
	}
}

func FuzzReadings(f *testing.F) {
	f.Add(readGoldenHex(f, "readings-v1.hex"))
	f.Add(readGoldenHex(f, "readings-v2.hex"))
	f.Add(readGoldenHex(f, "readings-v3.hex"))
	r := rand.New(rand.NewPCG(6, 6))
	for range 4 {
		b, _ := ReadingsCodec{}.Encode(randReadings(f, r))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var c ReadingsCodec
		fuzzRoundTrip(t, in, c.Decode, c.Encode, sameReadings)
	})
}

func FuzzReading(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 8 {
		rs := randReadings(f, r)
		b, _ := ReadingCodec{}.Encode(rs.Items[0])
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var c ReadingCodec
		fuzzRoundTrip(t, in, c.Decode, c.Encode, sameReading)
	})
}

func BenchmarkReadings(b *testing.B) {
	r := rand.New(rand.NewPCG(8, 8))
	p := randPackage(b, r, 40)
	rs := Readings{DeviceID: p.Header.DeviceID}
	for i := range p.Messages {
		rs.Items = append(rs.Items, NewReading(rs.DeviceID, &p.Messages[i]))
	}
	enc, err := ReadingsCodec{}.Encode(rs)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := (ReadingsCodec{}).Encode(rs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(40*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := (ReadingsCodec{}).Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(40*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
