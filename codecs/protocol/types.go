package protocol

import "fmt"

// Protocol constants from PROTOCOL.md.
const (
	// Magic is the two bytes every package starts with ("WS").
	Magic = "WS"
	// HeaderLenV1 and HeaderLenV2 are the header sizes of each version.
	HeaderLenV1 = 34
	HeaderLenV2 = 36
	// MaxMessages is the largest message_count.
	MaxMessages = 4096
	// MaxBodyLen is the largest body, on the wire and after decompression.
	MaxBodyLen = 1 << 20
	// MaxTimeOffsetMs is the largest time offset (22 bits).
	MaxTimeOffsetMs = 1<<22 - 1
	// FlagSnappy is flag bit 0: the body is snappy block-compressed.
	FlagSnappy = 0x01
	// RecordHeaderLen is the size of a record's payload_len and crc.
	RecordHeaderLen = 6
)

// MsgType is a payload's 4-bit type.
type MsgType uint8

// Message types.
const (
	TypeGPS     MsgType = 1
	TypeAccel   MsgType = 2
	TypeEngine  MsgType = 3
	TypeEvent   MsgType = 4
	TypeBattery MsgType = 5 // version 2 only
)

var typeNames = [...]string{TypeGPS: "gps", TypeAccel: "accel", TypeEngine: "engine", TypeEvent: "event", TypeBattery: "battery"}

// String returns the type's name as in the test vectors ("gps", "accel",
// "engine", "event", "battery"), or "type(N)" for others.
func (t MsgType) String() string {
	if t >= TypeGPS && t <= TypeBattery {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseMsgType returns the MsgType named s.
func ParseMsgType(s string) (MsgType, error) {
	for t := TypeGPS; t <= TypeBattery; t++ {
		if typeNames[t] == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("protocol: unknown message type %q", s)
}

// PayloadLen returns the exact payload length of type t in a package of the
// given version, and false if t is an unknown type for that version.
func PayloadLen(version uint8, t MsgType) (int, bool) {
	switch t {
	case TypeGPS:
		if version == 1 {
			return 14, true
		}
		return 16, true
	case TypeAccel:
		return 10, true
	case TypeEngine:
		return 7, true
	case TypeEvent:
		return 5, true
	case TypeBattery:
		if version == 1 {
			return 0, false
		}
		return 6, true
	}
	return 0, false
}

// EventCode is an event message's code.
type EventCode uint8

// Event codes.
const (
	EventIgnitionOn  EventCode = 1
	EventIgnitionOff EventCode = 2
	EventHarshBrake  EventCode = 3
	EventHarshAccel  EventCode = 4
	EventHarshCorner EventCode = 5
	EventCollision   EventCode = 6
	EventSpeeding    EventCode = 7
	EventIdling      EventCode = 8
)

var eventNames = [...]string{
	EventIgnitionOn: "ignition_on", EventIgnitionOff: "ignition_off",
	EventHarshBrake: "harsh_brake", EventHarshAccel: "harsh_accel",
	EventHarshCorner: "harsh_corner", EventCollision: "collision",
	EventSpeeding: "speeding", EventIdling: "idling",
}

// String returns the event's name ("ignition_on", ...), or "event(N)".
func (c EventCode) String() string {
	if c >= EventIgnitionOn && c <= EventIdling {
		return eventNames[c]
	}
	return fmt.Sprintf("event(%d)", uint8(c))
}

// Header is a package header. BodyLen is the body's length on the wire
// (compressed when Flags has FlagSnappy). Firmware is 0 in version 1.
type Header struct {
	Version      uint8
	Flags        uint8
	DeviceID     uint64
	PackageSeq   uint32
	BaseTimeMs   uint64
	MessageCount uint16
	BodyLen      uint32
	Firmware     uint16
}

// Len returns the header's length on the wire for its version (0 for an
// unsupported version).
func (h *Header) Len() int {
	switch h.Version {
	case 1:
		return HeaderLenV1
	case 2:
		return HeaderLenV2
	}
	return 0
}

// Message is one decoded message, in wire units. Only the fields of its Type
// are meaningful; the others are zero (Hdop and Satellites also in version 1
// GPS messages).
type Message struct {
	Type MsgType
	// OffsetMs is the 22-bit time offset from the package's base time.
	OffsetMs uint32
	// TimeMs is base_time_ms + time_offset_ms, modulo 2^64: see
	// TimeOverflowed.
	TimeMs uint64
	// CRC is the record's CRC (of the payload as sent).
	CRC uint32
	// ContentCRC is the CRC of the payload with its 22 time-offset bits set
	// to zero: with the device id and TimeMs, a message's identity across
	// packages.
	ContentCRC uint32

	// GPS.
	LatE7      int32  // 1e-7 degrees
	LonE7      int32  // 1e-7 degrees
	SpeedDkmh  uint16 // 0.1 km/h, 12 bits
	HeadingDeg uint16 // degrees, 9 bits
	HdopD      uint8  // 0.1, version 2 only
	Satellites uint8  // 5 bits, version 2 only

	// Accel, milli-g.
	XMg, YMg, ZMg int16

	// Engine.
	RPM        uint16 // 14 bits
	CoolantRaw uint8  // deg C + 40
	FuelPct    uint8  // percent, 7 bits

	// Event.
	Code     uint8 // an EventCode
	Severity uint8 // 3 bits

	// Battery (version 2 only).
	Millivolts uint16
}

// TimeOverflowed reports whether base_time_ms + time_offset_ms went past
// 2^64 - 1 (so TimeMs wrapped around); validation rejects such a message as
// future_timestamp.
func (m *Message) TimeOverflowed() bool { return m.TimeMs < uint64(m.OffsetMs) }

// Event returns the message's event code as an EventCode.
func (m *Message) Event() EventCode { return EventCode(m.Code) }

// RecordRejection is one record rejected on its own.
type RecordRejection struct {
	// Index is the record's 0-based position in the package.
	Index int
	// Reason is message_crc, bad_length or unknown_type.
	Reason Reason
}

// Package is a decoded package.
type Package struct {
	Header Header
	// Messages are the kept messages, in record order.
	Messages []Message
	// IntraPackageDuplicates counts the records dropped as copies of an
	// earlier record of the package.
	IntraPackageDuplicates int
	// Rejected lists the rejected records by ascending index.
	Rejected []RecordRejection
}

// Reset empties p, keeping the capacity of its slices.
func (p *Package) Reset() {
	p.Header = Header{}
	p.Messages = p.Messages[:0]
	p.IntraPackageDuplicates = 0
	p.Rejected = p.Rejected[:0]
}
