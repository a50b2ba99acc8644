package records

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// Reading is one normalized reading: a decoded, valid message in normal
// units. Only the fields of its Type are meaningful; the others are zero.
type Reading struct {
	DeviceID uint64
	// TimeMs is the message time, Unix milliseconds UTC.
	TimeMs uint64
	// ContentCRC is the message's content CRC: with DeviceID and TimeMs its
	// identity across packages.
	ContentCRC uint32
	Type       protocol.MsgType

	// GPS.
	LatDeg     float64
	LonDeg     float64
	SpeedKmh   float64
	HeadingDeg float64
	Hdop       float64
	Satellites float64
	// Accel, g.
	XG, YG, ZG float64
	// Engine.
	RPM      float64
	CoolantC float64
	FuelPct  float64
	// Event.
	EventCode float64
	Severity  float64
	// Battery.
	BatteryV float64
}

// NewReading converts a decoded message of a device to normal units:
// degrees from 1e-7 degrees, km/h from 0.1 km/h, hdop from 0.1, g from
// milli-g, deg C from raw - 40, volts from millivolts.
func NewReading(deviceID uint64, m *protocol.Message) Reading {
	r := Reading{DeviceID: deviceID, TimeMs: m.TimeMs, ContentCRC: m.ContentCRC, Type: m.Type}
	switch m.Type {
	case protocol.TypeGPS:
		r.LatDeg = float64(m.LatE7) / 1e7
		r.LonDeg = float64(m.LonE7) / 1e7
		r.SpeedKmh = float64(m.SpeedDkmh) / 10
		r.HeadingDeg = float64(m.HeadingDeg)
		r.Hdop = float64(m.HdopD) / 10
		r.Satellites = float64(m.Satellites)
	case protocol.TypeAccel:
		r.XG = float64(m.XMg) / 1000
		r.YG = float64(m.YMg) / 1000
		r.ZG = float64(m.ZMg) / 1000
	case protocol.TypeEngine:
		r.RPM = float64(m.RPM)
		r.CoolantC = float64(m.CoolantRaw) - 40
		r.FuelPct = float64(m.FuelPct)
	case protocol.TypeEvent:
		r.EventCode = float64(m.Code)
		r.Severity = float64(m.Severity)
	case protocol.TypeBattery:
		r.BatteryV = float64(m.Millivolts) / 1000
	}
	return r
}

// readingFields lists the float fields in record order with the scale
// that makes wire-derived values integers (see appendScaled).
var readingFields = [...]struct {
	get   func(*Reading) *float64
	scale float64
}{
	{func(r *Reading) *float64 { return &r.LatDeg }, 1e7},
	{func(r *Reading) *float64 { return &r.LonDeg }, 1e7},
	{func(r *Reading) *float64 { return &r.SpeedKmh }, 10},
	{func(r *Reading) *float64 { return &r.HeadingDeg }, 1},
	{func(r *Reading) *float64 { return &r.Hdop }, 10},
	{func(r *Reading) *float64 { return &r.Satellites }, 1},
	{func(r *Reading) *float64 { return &r.XG }, 1000},
	{func(r *Reading) *float64 { return &r.YG }, 1000},
	{func(r *Reading) *float64 { return &r.ZG }, 1000},
	{func(r *Reading) *float64 { return &r.RPM }, 1},
	{func(r *Reading) *float64 { return &r.CoolantC }, 1},
	{func(r *Reading) *float64 { return &r.FuelPct }, 1},
	{func(r *Reading) *float64 { return &r.EventCode }, 1},
	{func(r *Reading) *float64 { return &r.Severity }, 1},
	{func(r *Reading) *float64 { return &r.BatteryV }, 1000},
}

// readingVersion is the newest Reading format.
//
// Version 1, Reading: version byte, DeviceID (uvarint), TimeMs (uvarint),
// then the body. Readings: version byte, DeviceID (uvarint), count
// (uvarint), and per reading TimeMs (the first a uvarint, the others a
// zigzag varint of the difference from the previous one, modulo 2^64) and
// the body. The body: ContentCRC (4 bytes big-endian), Type (1 byte), a
// uvarint bit set of the float fields that are not +0 (bit i for field i in
// readingFields order), and each of those fields as appendScaled writes it.
const readingVersion = 1

// readingsVersion is the newest Readings format.
//
// Version 2 adds, after DeviceID, the package fields: Version (1 byte),
// Firmware (uvarint), ReceivedMs (varint), Duplicates (uvarint); the rest is
// as in version 1, which is still read (those fields then are zero).
//
// Version 3 adds, after Duplicates, RawOffset and Part (varints); versions
// 1 and 2 are still read (RawOffset then is 0 and Part -1).
const readingsVersion = 3

func appendReadingBody(b []byte, r *Reading) []byte {
	b = appendFixed32(b, r.ContentCRC)
	b = append(b, byte(r.Type))
	var set uint64
	for i, f := range readingFields {
		if math.Float64bits(*f.get(r)) != 0 {
			set |= 1 << i
		}
	}
	b = binary.AppendUvarint(b, set)
	for i, f := range readingFields {
		if set&(1<<i) != 0 {
			b = appendScaled(b, *f.get(r), f.scale)
		}
	}
	return b
}

func (rd *reader) readingBody(r *Reading) {
	r.ContentCRC = rd.fixed32("content crc")
	r.Type = protocol.MsgType(rd.byte1("type"))
	set := rd.uvarint("field set")
	if set >= 1<<len(readingFields) {
		rd.fail("field set")
		return
	}
	for i, f := range readingFields {
		if set&(1<<i) != 0 {
			*f.get(r) = rd.scaled("field", f.scale)
		}
	}
}

// ReadingCodec encodes and decodes Reading records. It implements
// codecs.Codec[Reading].
type ReadingCodec struct{}

// Encode returns the record bytes of r.
func (ReadingCodec) Encode(r Reading) ([]byte, error) {
	b := append(make([]byte, 0, 64), readingVersion)
	b = binary.AppendUvarint(b, r.DeviceID)
	b = binary.AppendUvarint(b, r.TimeMs)
	return appendReadingBody(b, &r), nil
}

// Decode parses record bytes written by any version of Encode.
func (ReadingCodec) Decode(b []byte) (Reading, error) {
	var r Reading
	rd := reader{b: b}
	rd.version("reading", readingVersion)
	r.DeviceID = rd.uvarint("device id")
	r.TimeMs = rd.uvarint("time")
	rd.readingBody(&r)
	if err := rd.finish("reading"); err != nil {
		return Reading{}, err
	}
	return r, nil
}

// Readings are the normalized readings of one package: one device's.
type Readings struct {
	DeviceID uint64
	// Items all have DeviceID as their DeviceID.
	Items []Reading
	// Duplicates counts the package's messages dropped as repeats, within
	// the package and across packages (format version 2).
	Duplicates uint64
	// Version and Firmware are the package's protocol version and firmware
	// (format version 2).
	Version  uint8
	Firmware uint16
	// ReceivedMs is when the edge received the package, Unix ms (format
	// version 2).
	ReceivedMs int64
	// RawOffset is the offset of the package's record in the raw topic and
	// Part the dedupe bucket these readings came from (-1: the part emitted
	// without a bucket check). Together they identify the record, so that a
	// replayed one is recognised (format version 3; older records decode
	// as RawOffset 0, "unknown", and Part -1).
	RawOffset int64
	Part      int64
}

// HasIdentity reports whether rs carries its package's identity (a raw
// offset); records without one cannot be recognised as replays.
func (rs *Readings) HasIdentity() bool { return rs.RawOffset > 0 }

// ReadingsCodec encodes and decodes Readings records. It implements
// codecs.Codec[Readings].
type ReadingsCodec struct{}

// minReadingLen is the fewest bytes a reading takes in a Readings record.
const minReadingLen = 1 + 4 + 1 + 1

// Encode returns the record bytes of rs. It fails if an item's DeviceID is
// not rs.DeviceID.
func (ReadingsCodec) Encode(rs Readings) ([]byte, error) {
	b := make([]byte, 0, 16+24*len(rs.Items))
	b = append(b, readingsVersion)
	b = binary.AppendUvarint(b, rs.DeviceID)
	b = append(b, rs.Version)
	b = binary.AppendUvarint(b, uint64(rs.Firmware))
	b = binary.AppendVarint(b, rs.ReceivedMs)
	b = binary.AppendUvarint(b, rs.Duplicates)
	b = binary.AppendVarint(b, rs.RawOffset)
	b = binary.AppendVarint(b, rs.Part)
	b = binary.AppendUvarint(b, uint64(len(rs.Items)))
	var prev uint64
	for i := range rs.Items {
		r := &rs.Items[i]
		if r.DeviceID != rs.DeviceID {
			return nil, fmt.Errorf("records: encode readings: item %d has device %d, not %d", i, r.DeviceID, rs.DeviceID)
		}
		if i == 0 {
			b = binary.AppendUvarint(b, r.TimeMs)
		} else {
			b = binary.AppendVarint(b, int64(r.TimeMs-prev))
		}
		prev = r.TimeMs
		b = appendReadingBody(b, r)
	}
	return b, nil
}

// Decode parses record bytes written by any version of Encode.
func (ReadingsCodec) Decode(b []byte) (Readings, error) {
	var rs Readings
	rd := reader{b: b}
	v := rd.version("readings", readingsVersion)
	rs.DeviceID = rd.uvarint("device id")
	if v >= 2 {
		rs.Version = rd.byte1("protocol version")
		fw := rd.uvarint("firmware")
		if fw > 0xffff {
			rd.fail("firmware")
		}
		rs.Firmware = uint16(fw)
		rs.ReceivedMs = rd.varint("received")
		rs.Duplicates = rd.uvarint("duplicates")
	}
	rs.Part = -1
	if v >= 3 {
		rs.RawOffset = rd.varint("raw offset")
		rs.Part = rd.varint("part")
	}
	if n := rd.length("reading count", minReadingLen); n > 0 {
		rs.Items = make([]Reading, n)
		var prev uint64
		for i := range rs.Items {
			r := &rs.Items[i]
			r.DeviceID = rs.DeviceID
			if i == 0 {
				r.TimeMs = rd.uvarint("time")
			} else {
				r.TimeMs = prev + uint64(rd.varint("time delta"))
			}
			prev = r.TimeMs
			rd.readingBody(r)
		}
	}
	if err := rd.finish("readings"); err != nil {
		return Readings{}, err
	}
	return rs, nil
}
