package records

import (
	"encoding/binary"
	"fmt"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// Batch is what the decode stage hands on for one accepted package: its
// header's identity, its kept messages and what became of the others. One
// record per package (rather than per message) keeps the per-record costs
// of the broker and the codec off the per-message path.
type Batch struct {
	DeviceID   uint64
	PackageSeq uint32
	Version    uint8
	Firmware   uint16
	BaseTimeMs uint64
	// ReceivedMs is when the ingest edge received the package, Unix ms.
	ReceivedMs int64
	// RawPartition and RawOffset locate the package's record in the raw
	// topic: the package's identity, by which later stages recognise a
	// replay of it (format version 2; a version 1 record decodes them as 0,
	// and a RawOffset of 0 means "unknown").
	RawPartition int32
	RawOffset    int64
	// Messages are the kept messages. Each one's TimeMs must be
	// BaseTimeMs + OffsetMs (modulo 2^64), as the decoder makes it.
	Messages               []protocol.Message
	IntraPackageDuplicates int
	Rejected               []protocol.RecordRejection
}

// NewBatch returns the Batch of a decoded package received at receivedMs.
// It shares p's slices.
func NewBatch(p *protocol.Package, receivedMs int64) Batch {
	return Batch{
		DeviceID:               p.Header.DeviceID,
		PackageSeq:             p.Header.PackageSeq,
		Version:                p.Header.Version,
		Firmware:               p.Header.Firmware,
		BaseTimeMs:             p.Header.BaseTimeMs,
		ReceivedMs:             receivedMs,
		Messages:               p.Messages,
		IntraPackageDuplicates: p.IntraPackageDuplicates,
		Rejected:               p.Rejected,
	}
}

// batchVersion is the newest Batch format.
//
// Version 1: version byte; DeviceID, PackageSeq (uvarint); Version (1
// byte); Firmware, BaseTimeMs (uvarint); ReceivedMs (varint);
// IntraPackageDuplicates (uvarint); rejection count (uvarint) and per
// rejection Index (uvarint) and Reason (1 byte); message count (uvarint)
// and per message: Type (1 byte), OffsetMs (uvarint), CRC and ContentCRC (4
// bytes each, big-endian), then its type's fields: GPS LatE7, LonE7
// (zigzag varint), SpeedDkmh, HeadingDeg, HdopD, Satellites (uvarint);
// accel XMg, YMg, ZMg (zigzag varint); engine RPM, CoolantRaw, FuelPct
// (uvarint); event Code, Severity (uvarint); battery Millivolts (uvarint).
// Fields of other types are not written and decode as zero.
//
// Version 2 adds, after ReceivedMs, RawPartition and RawOffset (varints);
// the rest is as in version 1, which is still read (both then are 0).
const batchVersion = 2

// minMessageLen is the fewest bytes a message takes in a Batch record.
const minMessageLen = 1 + 1 + 4 + 4 + 1

// BatchCodec encodes and decodes Batch records. It implements
// codecs.Codec[Batch].
type BatchCodec struct{}

// Encode returns the record bytes of b. It fails if a message's OffsetMs is
// over 22 bits or its TimeMs is not BaseTimeMs + OffsetMs, if its type is
// not 1..5, or if a count or index is negative or over 2^31 - 1.
func (BatchCodec) Encode(b Batch) ([]byte, error) {
	return AppendBatch(make([]byte, 0, 32+24*len(b.Messages)), &b)
}

// AppendBatch appends the record bytes of b to dst; see BatchCodec.Encode.
func AppendBatch(dst []byte, b *Batch) ([]byte, error) {
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, b.DeviceID)
	dst = binary.AppendUvarint(dst, uint64(b.PackageSeq))
	dst = append(dst, b.Version)
	dst = binary.AppendUvarint(dst, uint64(b.Firmware))
	dst = binary.AppendUvarint(dst, b.BaseTimeMs)
	dst = binary.AppendVarint(dst, b.ReceivedMs)
	dst = binary.AppendVarint(dst, int64(b.RawPartition))
	dst = binary.AppendVarint(dst, b.RawOffset)
	if b.IntraPackageDuplicates < 0 || b.IntraPackageDuplicates > 1<<31-1 {
		return nil, fmt.Errorf("records: encode batch: %d duplicates", b.IntraPackageDuplicates)
	}
	dst = binary.AppendUvarint(dst, uint64(b.IntraPackageDuplicates))
	dst = binary.AppendUvarint(dst, uint64(len(b.Rejected)))
	for _, r := range b.Rejected {
		if r.Index < 0 || r.Index > 1<<31-1 {
			return nil, fmt.Errorf("records: encode batch: rejection index %d", r.Index)
		}
		dst = binary.AppendUvarint(dst, uint64(r.Index))
		dst = append(dst, byte(r.Reason))
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Messages)))
	for i := range b.Messages {
		m := &b.Messages[i]
		if m.Type < protocol.TypeGPS || m.Type > protocol.TypeBattery {
			return nil, fmt.Errorf("records: encode batch: message %d has type %d", i, m.Type)
		}
		if m.OffsetMs > protocol.MaxTimeOffsetMs || m.TimeMs != b.BaseTimeMs+uint64(m.OffsetMs) {
			return nil, fmt.Errorf("records: encode batch: message %d: time %d is not base %d + offset %d", i, m.TimeMs, b.BaseTimeMs, m.OffsetMs)
		}
		dst = append(dst, byte(m.Type))
		dst = binary.AppendUvarint(dst, uint64(m.OffsetMs))
		dst = appendFixed32(dst, m.CRC)
		dst = appendFixed32(dst, m.ContentCRC)
		switch m.Type {
		case protocol.TypeGPS:
			dst = binary.AppendVarint(dst, int64(m.LatE7))
			dst = binary.AppendVarint(dst, int64(m.LonE7))
			dst = binary.AppendUvarint(dst, uint64(m.SpeedDkmh))
			dst = binary.AppendUvarint(dst, uint64(m.HeadingDeg))
			dst = binary.AppendUvarint(dst, uint64(m.HdopD))
			dst = binary.AppendUvarint(dst, uint64(m.Satellites))
		case protocol.TypeAccel:
			dst = binary.AppendVarint(dst, int64(m.XMg))
			dst = binary.AppendVarint(dst, int64(m.YMg))
			dst = binary.AppendVarint(dst, int64(m.ZMg))
		case protocol.TypeEngine:
			dst = binary.AppendUvarint(dst, uint64(m.RPM))
			dst = binary.AppendUvarint(dst, uint64(m.CoolantRaw))
			dst = binary.AppendUvarint(dst, uint64(m.FuelPct))
		case protocol.TypeEvent:
			dst = binary.AppendUvarint(dst, uint64(m.Code))
			dst = binary.AppendUvarint(dst, uint64(m.Severity))
		case protocol.TypeBattery:
			dst = binary.AppendUvarint(dst, uint64(m.Millivolts))
		}
	}
	return dst, nil
}

// Decode parses record bytes written by any version of Encode. The result
// shares no memory with b.
func (BatchCodec) Decode(b []byte) (Batch, error) {
	var out Batch
	if err := DecodeBatch(b, &out); err != nil {
		return Batch{}, err
	}
	return out, nil
}

// DecodeBatch parses record bytes into out, reusing out's slices; see
// BatchCodec.Decode. On error out's content is unspecified.
func DecodeBatch(b []byte, out *Batch) error {
	rd := reader{b: b}
	v := rd.version("batch", batchVersion)
	out.DeviceID = rd.uvarint("device id")
	out.PackageSeq = rd.uint32v("package seq")
	out.Version = rd.byte1("version")
	out.Firmware = uint16(rd.bounded("firmware", 1<<16-1))
	out.BaseTimeMs = rd.uvarint("base time")
	out.ReceivedMs = rd.varint("received time")
	out.RawPartition, out.RawOffset = 0, 0
	if v >= 2 {
		out.RawPartition = rd.int32v("raw partition")
		out.RawOffset = rd.varint("raw offset")
	}
	out.IntraPackageDuplicates = int(rd.bounded("duplicates", 1<<31-1))
	out.Rejected = out.Rejected[:0]
	if n := rd.length("rejection count", 2); n > 0 {
		for range n {
			r := protocol.RecordRejection{
				Index:  int(rd.bounded("rejection index", 1<<31-1)),
				Reason: protocol.Reason(rd.byte1("rejection reason")),
			}
			if rd.err == nil && !r.Reason.Valid() {
				rd.fail("rejection reason")
			}
			out.Rejected = append(out.Rejected, r)
		}
	}
	out.Messages = out.Messages[:0]
	n := rd.length("message count", minMessageLen)
	if cap(out.Messages) < n {
		out.Messages = make([]protocol.Message, 0, n)
	}
	for range n {
		if rd.err != nil {
			break
		}
		var m protocol.Message
		m.Type = protocol.MsgType(rd.byte1("type"))
		m.OffsetMs = uint32(rd.bounded("offset", protocol.MaxTimeOffsetMs))
		m.TimeMs = out.BaseTimeMs + uint64(m.OffsetMs)
		m.CRC = rd.fixed32("crc")
		m.ContentCRC = rd.fixed32("content crc")
		switch m.Type {
		case protocol.TypeGPS:
			m.LatE7 = rd.int32v("lat")
			m.LonE7 = rd.int32v("lon")
			m.SpeedDkmh = uint16(rd.bounded("speed", 1<<16-1))
			m.HeadingDeg = uint16(rd.bounded("heading", 1<<16-1))
			m.HdopD = uint8(rd.bounded("hdop", 1<<8-1))
			m.Satellites = uint8(rd.bounded("satellites", 1<<8-1))
		case protocol.TypeAccel:
			m.XMg = int16(rd.int16v("x"))
			m.YMg = int16(rd.int16v("y"))
			m.ZMg = int16(rd.int16v("z"))
		case protocol.TypeEngine:
			m.RPM = uint16(rd.bounded("rpm", 1<<16-1))
			m.CoolantRaw = uint8(rd.bounded("coolant", 1<<8-1))
			m.FuelPct = uint8(rd.bounded("fuel", 1<<8-1))
		case protocol.TypeEvent:
			m.Code = uint8(rd.bounded("code", 1<<8-1))
			m.Severity = uint8(rd.bounded("severity", 1<<8-1))
		case protocol.TypeBattery:
			m.Millivolts = uint16(rd.bounded("millivolts", 1<<16-1))
		default:
			rd.fail("message type")
		}
		out.Messages = append(out.Messages, m)
	}
	return rd.finish("batch")
}
