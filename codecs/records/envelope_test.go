package records

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
)

var _ codecs.Codec[Envelope] = EnvelopeCodec{}

func randBytes(r *rand.Rand, max int) []byte {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randString(r *rand.Rand, max int) string {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

func randTime(r *rand.Rand) time.Time {
	if r.IntN(5) == 0 {
		return time.Time{}
	}
	return time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(int64(time.Second))).UTC()
}

func randEnvelope(r *rand.Rand) Envelope {
	e := Envelope{
		Stage:        randString(r, 20),
		Reason:       randString(r, 20),
		Error:        randString(r, 200),
		Topic:        randString(r, 30),
		Partition:    int32(r.Uint32()),
		Offset:       int64(r.Uint64()),
		Key:          randBytes(r, 40),
		Value:        randBytes(r, 300),
		Timestamp:    randTime(r),
		Attempts:     int(int64(r.Uint64())),
		FirstFailure: randTime(r),
		LastFailure:  randTime(r),
	}
	for range r.IntN(4) {
		e.Headers = append(e.Headers, Header{Key: randString(r, 10), Value: randBytes(r, 20)})
	}
	return e
}

func TestEnvelopeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var c EnvelopeCodec
	for i := range 2000 {
		e := randEnvelope(r)
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(b)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("case %d: round trip\n got %#v\nwant %#v", i, got, e)
		}
	}
}

func TestEnvelopeNonUTCTimeKeepsInstant(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	e := Envelope{Timestamp: time.Date(2024, 5, 6, 7, 8, 9, 10, loc)}
	b, _ := EnvelopeCodec{}.Encode(e)
	got, err := EnvelopeCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Timestamp.Equal(e.Timestamp) || got.Timestamp.Location() != time.UTC {
		t.Fatalf("got %v, want %v in UTC", got.Timestamp, e.Timestamp)
	}
}

// TestEnvelopeDecodesVersion1 reads bytes built by hand to the version 1
// layout: a newer reader must keep reading them.
func TestEnvelopeDecodesVersion1(t *testing.T) {
	golden := readGoldenHex(t, "envelope-v1.hex")
	got, err := EnvelopeCodec{}.Decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{
		Stage: "decode", Reason: "header_crc", Error: "bad header crc",
		Topic: "packages", Partition: 3, Offset: 123456789,
		Key: []byte("k1"), Value: nil,
		Headers:      []Header{{Key: "trace", Value: []byte("abc")}, {Key: "empty", Value: []byte{}}},
		Timestamp:    time.Date(2023, 11, 14, 22, 13, 20, 5, time.UTC),
		FirstFailure: time.Date(2023, 11, 14, 22, 15, 0, 0, time.UTC),
		LastFailure:  time.Date(2023, 11, 14, 22, 16, 40, 250000000, time.UTC),
		Attempts:     4,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
	if envelopeVersion == 1 {
		enc, _ := EnvelopeCodec{}.Encode(want)
		if !bytes.Equal(enc, golden) {
			t.Fatalf("encoder no longer writes the version 1 layout:\n got %x\nwant %x", enc, golden)
		}
	}
}

func TestEnvelopeRejectsBadBytes(t *testing.T) {
	golden := readGoldenHex(t, "envelope-v1.hex")
	var c EnvelopeCodec
	for n := range len(golden) {
		if _, err := c.Decode(golden[:n]); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("prefix of %d bytes: err = %v, want corrupt", n, err)
		}
	}
	if _, err := c.Decode(append(bytes.Clone(golden), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: err = %v", err)
	}
	newer := bytes.Clone(golden)
	newer[0] = envelopeVersion + 1
	if _, err := c.Decode(newer); !errors.Is(err, ErrVersion) {
		t.Fatalf("newer version: err = %v, want ErrVersion", err)
	}
	// A header count far beyond the bytes must fail, not allocate.
	huge := []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := c.Decode(huge); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge header count: err = %v", err)
	}
}

func TestEnvelopeDecodeDoesNotAlias(t *testing.T) {
	b, _ := EnvelopeCodec{}.Encode(Envelope{Key: []byte("key"), Value: []byte("value")})
	e, err := EnvelopeCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(e.Key) != "key" || string(e.Value) != "value" {
		t.Fatalf("decoded envelope changed with the input buffer: %q %q", e.Key, e.Value)
	}
}

func FuzzEnvelope(f *testing.F) {
	f.Add(readGoldenHex(f, "envelope-v1.hex"))
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		b, _ := EnvelopeCodec{}.Encode(randEnvelope(r))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c EnvelopeCodec
		e, err := c.Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrVersion: %v", err)
			}
			return
		}
		enc, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.Decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", again, e)
		}
	})
}

func BenchmarkEnvelope(b *testing.B) {
	e := Envelope{
		Stage: "decode", Reason: "header_crc", Error: "protocol: header_crc", Topic: "packages",
		Partition: 7, Offset: 1 << 30, Key: []byte("4242"), Value: make([]byte, 1200),
		Headers:   []Header{{Key: "edge", Value: []byte("eu-1")}},
		Timestamp: time.Now(), Attempts: 1, FirstFailure: time.Now(), LastFailure: time.Now(),
	}
	var c EnvelopeCodec
	enc, _ := c.Encode(e)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		buf := make([]byte, 0, 2*len(enc))
		for b.Loop() {
			buf = AppendEnvelope(buf[:0], e)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := c.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
