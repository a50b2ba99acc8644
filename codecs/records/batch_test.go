package records

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/protocol"
)

var (
	_ codecs.Codec[Batch]    = BatchCodec{}
	_ codecs.Codec[Reading]  = ReadingCodec{}
	_ codecs.Codec[Readings] = ReadingsCodec{}
)

// randPackage builds and decodes a random package, so that its messages
// are what the decoder produces.
func randPackage(t testing.TB, r *rand.Rand, n int) *protocol.Package {
	t.Helper()
	version := uint8(1 + r.IntN(2))
	h := protocol.Header{Version: version, Flags: uint8(r.IntN(2)), DeviceID: 1 + r.Uint64N(math.MaxUint64),
		PackageSeq: r.Uint32(), BaseTimeMs: r.Uint64()}
	if version == 2 {
		h.Firmware = uint16(r.Uint32())
	}
	types := []protocol.MsgType{protocol.TypeGPS, protocol.TypeAccel, protocol.TypeEngine, protocol.TypeEvent}
	if version == 2 {
		types = append(types, protocol.TypeBattery)
	}
	msgs := make([]protocol.Message, n)
	for i := range msgs {
		m := protocol.Message{Type: types[r.IntN(len(types))], TimeMs: h.BaseTimeMs + uint64(r.IntN(protocol.MaxTimeOffsetMs+1))}
		m.LatE7, m.LonE7 = int32(r.Uint32()), int32(r.Uint32())
		m.SpeedDkmh, m.HeadingDeg = uint16(r.IntN(1<<12)), uint16(r.IntN(1<<9))
		if version == 2 {
			m.HdopD, m.Satellites = uint8(r.Uint32()), uint8(r.IntN(32))
		}
		m.XMg, m.YMg, m.ZMg = int16(r.Uint32()), int16(r.Uint32()), int16(r.Uint32())
		m.RPM, m.CoolantRaw, m.FuelPct = uint16(r.IntN(1<<14)), uint8(r.Uint32()), uint8(r.IntN(128))
		m.Code, m.Severity = uint8(r.Uint32()), uint8(r.IntN(8))
		m.Millivolts = uint16(r.Uint32())
		msgs[i] = m
	}
	pkg, err := protocol.Encode(h, msgs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := protocol.Decode(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func randBatch(t testing.TB, r *rand.Rand) Batch {
	p := randPackage(t, r, 1+r.IntN(50))
	b := NewBatch(p, int64(r.Uint64()))
	b.IntraPackageDuplicates = r.IntN(5)
	b.RawPartition = r.Int32N(64)
	b.RawOffset = r.Int64N(1 << 40)
	for i := range r.IntN(4) {
		b.Rejected = append(b.Rejected, protocol.RecordRejection{Index: i * 3, Reason: protocol.Reason(1 + r.IntN(17))})
	}
	return b
}

// normBatch maps empty slices to nil, as Decode returns them.
func normBatch(b Batch) Batch {
	if len(b.Messages) == 0 {
		b.Messages = nil
	}
	if len(b.Rejected) == 0 {
		b.Rejected = nil
	}
	return b
}

func TestBatchRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var c BatchCodec
	var reused Batch
	for i := range 500 {
		b := randBatch(t, r)
		enc, err := c.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(enc)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(normBatch(got), normBatch(b)) {
			t.Fatalf("case %d:\n got %+v\nwant %+v", i, got, b)
		}
		if err := DecodeBatch(enc, &reused); err != nil || !reflect.DeepEqual(normBatch(reused), normBatch(b)) {
			t.Fatalf("case %d: DecodeBatch into a reused batch: %v", i, err)
		}
	}
}

func TestBatchEncodeRejectsInconsistent(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	b := randBatch(t, r)
	b.Messages[0].TimeMs++
	if _, err := (BatchCodec{}).Encode(b); err == nil {
		t.Fatal("a message time that is not base + offset was encoded")
	}
	b = randBatch(t, r)
	b.Messages[0].Type = 9
	if _, err := (BatchCodec{}).Encode(b); err == nil {
		t.Fatal("type 9 was encoded")
	}
}

func TestBatchDecodesVersion1(t *testing.T) {
	golden := readGoldenHex(t, "batch-v1.hex")
	got, err := BatchCodec{}.Decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	base := uint64(1763900000000)
	want := Batch{
		DeviceID: 4242, PackageSeq: 7, Version: 2, Firmware: 515, BaseTimeMs: base, ReceivedMs: 1763900003500,
		IntraPackageDuplicates: 1,
		Rejected:               []protocol.RecordRejection{{Index: 3, Reason: protocol.ReasonMessageCRC}},
		Messages: []protocol.Message{
			{Type: protocol.TypeGPS, TimeMs: base, CRC: 826776278, ContentCRC: 0x11223344,
				LatE7: 474979530, LonE7: -703333000, SpeedDkmh: 873, HeadingDeg: 271, HdopD: 9, Satellites: 11},
			{Type: protocol.TypeBattery, OffsetMs: 2000, TimeMs: base + 2000, CRC: 1135353626, ContentCRC: 0xaabbccdd, Millivolts: 12650},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if batchVersion == 1 {
		enc, _ := BatchCodec{}.Encode(want)
		if !bytes.Equal(enc, golden) {
			t.Fatalf("encoder no longer writes the version 1 layout:\n got %x\nwant %x", enc, golden)
		}
	}
}

// Version 2 adds the raw record's coordinates; the encoder writes it, and
// the bytes are pinned by a golden file.
func TestBatchVersion2(t *testing.T) {
	golden := readGoldenHex(t, "batch-v2.hex")
	got, err := BatchCodec{}.Decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := Batch{
		DeviceID: 4242, PackageSeq: 7, Version: 2, Firmware: 515, BaseTimeMs: 1763900000000, ReceivedMs: 1763900003500,
		RawPartition: 3, RawOffset: 123456,
		Messages: []protocol.Message{
			{Type: protocol.TypeBattery, OffsetMs: 2000, TimeMs: 1763900002000, CRC: 1135353626, ContentCRC: 0xaabbccdd, Millivolts: 12650},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if batchVersion == 2 {
		enc, err := BatchCodec{}.Encode(want)
		if err != nil || !bytes.Equal(enc, golden) {
			t.Fatalf("encoder no longer writes the version 2 layout (%v):\n got %x\nwant %x", err, enc, golden)
		}
	}
}

func TestBatchRejectsBadBytes(t *testing.T) {
	golden := readGoldenHex(t, "batch-v1.hex")
	for _, name := range []string{"batch-v1.hex", "batch-v2.hex"} {
		g := readGoldenHex(t, name)
		for n := range len(g) {
			if _, err := (BatchCodec{}).Decode(g[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("%s: prefix of %d bytes: %v", name, n, err)
			}
		}
	}
	newer := bytes.Clone(golden)
	newer[0] = batchVersion + 1
	if _, err := (BatchCodec{}).Decode(newer); !errors.Is(err, ErrVersion) {
		t.Fatalf("newer version: %v", err)
	}
}

func FuzzBatch(f *testing.F) {
	f.Add(readGoldenHex(f, "batch-v1.hex"))
	f.Add(readGoldenHex(f, "batch-v2.hex"))
	r := rand.New(rand.NewPCG(3, 3))
	for range 4 {
		b, err := BatchCodec{}.Encode(randBatch(f, r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var c BatchCodec
		b, err := c.Decode(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrVersion: %v", err)
			}
			return
		}
		enc, err := c.Encode(b)
		if err != nil {
			t.Fatalf("a decoded batch does not encode: %v", err)
		}
		again, err := c.Decode(enc)
		if err != nil || !reflect.DeepEqual(normBatch(again), normBatch(b)) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, again, b)
		}
	})
}

// typicalBatch is the Batch of a 40-message package.
func typicalBatch(b *testing.B) Batch {
	r := rand.New(rand.NewPCG(4, 4))
	return NewBatch(randPackage(b, r, 40), 1763900003500)
}

func BenchmarkBatch(b *testing.B) {
	batch := typicalBatch(b)
	enc, err := BatchCodec{}.Encode(batch)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		buf := make([]byte, 0, 2*len(enc))
		for b.Loop() {
			buf, _ = AppendBatch(buf[:0], &batch)
		}
		b.ReportMetric(40*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := (BatchCodec{}).Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(40*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("decode-reuse", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		var out Batch
		for b.Loop() {
			if err := DecodeBatch(enc, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(40*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
