package protocol

import (
	"encoding/binary"
	"strconv"
	"testing"

	gsnappy "github.com/golang/snappy"
	ksnappy "github.com/klauspost/compress/snappy"
)

// reportMessages adds a messages/s figure.
func reportMessages(b *testing.B, n int) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDecode decodes a typical package: version 2, snappy, 40 mixed
// messages (and, for scale, 400 and 4096).
func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{40, 400, 4096} {
		b.Run(itoa(n)+"msgs", func(b *testing.B) {
			pkg := typicalPackage(b, n)
			var d Decoder
			var p Package
			b.SetBytes(int64(len(pkg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(pkg, &p); err != nil {
					b.Fatal(err)
				}
			}
			if len(p.Messages) != n {
				b.Fatalf("%d messages kept", len(p.Messages))
			}
			reportMessages(b, n)
		})
	}
}

// snappyDecoder is one of the compared snappy block decoders.
type snappyDecoder struct {
	name   string
	decode func(dst, src []byte) ([]byte, error)
}

var snappyDecoders = []snappyDecoder{
	{"golang", gsnappy.Decode},
	{"klauspost", ksnappy.Decode},              // the S2 decoder: accepts S2 extensions
	{"klauspost-strict", ksnappy.DecodeStrict}, // standard snappy only
}

// baseline is the floor no decoder beats: check the header CRC,
// snappy-decode the body into a reused buffer and check every record's CRC.
func baseline(pkg, buf []byte, decode func(dst, src []byte) ([]byte, error)) (int, error) {
	hl := HeaderLenV2
	if crc(pkg[:hl-4]) != binary.BigEndian.Uint32(pkg[hl-4:]) {
		return 0, errBench
	}
	body, err := decode(buf, pkg[hl:])
	if err != nil {
		return 0, err
	}
	ok := 0
	for off := 0; off+RecordHeaderLen <= len(body); {
		pl := int(binary.BigEndian.Uint16(body[off:]))
		end := off + RecordHeaderLen + pl
		if end > len(body) {
			break
		}
		if crc(body[off+RecordHeaderLen:end]) == binary.BigEndian.Uint32(body[off+2:]) {
			ok++
		}
		off = end
	}
	return ok, nil
}

type benchError struct{}

func (benchError) Error() string { return "bench: bad header" }

var errBench error = benchError{}

// BenchmarkBaseline is the snappy-decode + CRC-check floor for the typical
// package, with each snappy library.
func BenchmarkBaseline(b *testing.B) {
	pkg := typicalPackage(b, 40)
	buf := make([]byte, MaxBodyLen)
	for _, sd := range snappyDecoders {
		b.Run(sd.name, func(b *testing.B) {
			b.SetBytes(int64(len(pkg)))
			b.ReportAllocs()
			for b.Loop() {
				n, err := baseline(pkg, buf, sd.decode)
				if err != nil || n != 40 {
					b.Fatal(n, err)
				}
			}
			reportMessages(b, 40)
		})
	}
}

// BenchmarkBaselineBodyCRC is a lower floor still: one CRC over the whole
// decompressed body instead of one per record (not a conforming check, but
// the cost of touching every byte once).
func BenchmarkBaselineBodyCRC(b *testing.B) {
	pkg := typicalPackage(b, 40)
	buf := make([]byte, MaxBodyLen)
	for _, sd := range snappyDecoders {
		b.Run(sd.name, func(b *testing.B) {
			b.SetBytes(int64(len(pkg)))
			b.ReportAllocs()
			var sink uint32
			for b.Loop() {
				hl := HeaderLenV2
				if crc(pkg[:hl-4]) != binary.BigEndian.Uint32(pkg[hl-4:]) {
					b.Fatal("header crc")
				}
				body, err := sd.decode(buf, pkg[hl:])
				if err != nil {
					b.Fatal(err)
				}
				sink ^= crc(body)
			}
			_ = sink
			reportMessages(b, 40)
		})
	}
}

// BenchmarkSnappyDecode compares the snappy libraries on the typical
// package's body alone.
func BenchmarkSnappyDecode(b *testing.B) {
	pkg := typicalPackage(b, 40)
	body := pkg[HeaderLenV2:]
	buf := make([]byte, MaxBodyLen)
	for _, sd := range snappyDecoders {
		b.Run(sd.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sd.decode(buf, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeSameCRC is the hostile worst case for duplicate detection:
// 4096 distinct records (about 1 MiB) that all share one CRC.
func BenchmarkDecodeSameCRC(b *testing.B) {
	const n, size = 4096, 250
	var body []byte
	p := make([]byte, size)
	for i := range n {
		binary.BigEndian.PutUint32(p, uint32(i)|0x10000000)
		body = AppendRecord(body, forceCRC(p, 0xdeadbeef))
	}
	pkg := AssemblePackage(nil, Header{Version: 2, DeviceID: 1, MessageCount: n}, body)
	benchRejectAll(b, pkg, n)
}

// BenchmarkEncode encodes the typical package.
func BenchmarkEncode(b *testing.B) {
	pkg := typicalPackage(b, 40)
	p := mustDecodeB(b, pkg)
	var e Encoder
	buf := make([]byte, 0, 2*len(pkg))
	b.SetBytes(int64(len(pkg)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = e.Append(buf[:0], p.Header, p.Messages); err != nil {
			b.Fatal(err)
		}
	}
	reportMessages(b, 40)
}

func mustDecodeB(b *testing.B, pkg []byte) *Package {
	p, err := Decode(pkg)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func itoa(n int) string { return strconv.Itoa(n) }

// slotCollisionPackage is a hostile package for the duplicate table: n
// records with distinct CRCs that a table indexed by (CRC * 0x9E3779B97F4A7C15)
// >> (64-13), a fixed multiplier, would all put in one slot.
func slotCollisionPackage(b testing.TB, n int) []byte {
	b.Helper()
	var body []byte
	p := make([]byte, 8)
	c := uint32(12345)
	for i := range n {
		for (uint64(c)*0x9E3779B97F4A7C15)>>51 != 7 {
			c++
		}
		binary.BigEndian.PutUint32(p, uint32(i)|0xf0000000) // unknown type
		body = AppendRecord(body, forceCRC(p, c))
		c++
	}
	return AssemblePackage(nil, Header{Version: 2, DeviceID: 1, MessageCount: uint16(n)}, body)
}

// BenchmarkDecodeSlotCollisions is the hostile case of distinct CRCs forged
// to share a slot of the duplicate table: 4096 records, 57 KB.
func BenchmarkDecodeSlotCollisions(b *testing.B) {
	pkg := slotCollisionPackage(b, 4096)
	benchRejectAll(b, pkg, 4096)
}

// benchRejectAll decodes a hostile package over and over with a warm
// Decoder and checks that all n of its records were rejected.
func benchRejectAll(b *testing.B, pkg []byte, n int) {
	var d Decoder
	var pp Package
	b.SetBytes(int64(len(pkg)))
	for b.Loop() {
		if err := d.Decode(pkg, &pp); err != nil {
			b.Fatal(err)
		}
	}
	if len(pp.Rejected) != n {
		b.Fatalf("%d rejected", len(pp.Rejected))
	}
}
