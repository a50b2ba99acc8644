package records

import (
	"encoding/binary"
	"math"
)

// AlertKind says what raised an alert.
type AlertKind uint8

// The kinds of alert.
const (
	// AlertEvent: a device event of high severity (harsh braking, collision, ...).
	AlertEvent AlertKind = 1
	// AlertCoolant: engine coolant above the threshold.
	AlertCoolant AlertKind = 2
)

// String returns the kind's name: "event", "coolant" or "unknown".
func (k AlertKind) String() string {
	switch k {
	case AlertEvent:
		return "event"
	case AlertCoolant:
		return "coolant"
	}
	return "unknown"
}

// Alert is one record of the alerts topic.
type Alert struct {
	DeviceID   uint64
	TimeMs     uint64
	ContentCRC uint32
	Kind       AlertKind
	// EventCode and Severity are set for AlertEvent.
	EventCode uint8
	Severity  uint8
	// CoolantC is set for AlertCoolant.
	CoolantC float64
}

// alertVersion is the newest Alert format.
//
// Version 1: version byte, DeviceID, TimeMs (uvarints), ContentCRC (4 bytes
// big-endian), Kind, EventCode, Severity (1 byte each), CoolantC (8 bytes,
// IEEE 754 big-endian).
const alertVersion = 1

// AlertCodec encodes and decodes Alert records. It implements
// codecs.Codec[Alert].
type AlertCodec struct{}

// Encode returns the record bytes of a.
func (AlertCodec) Encode(a Alert) ([]byte, error) {
	b := make([]byte, 0, 32)
	b = append(b, alertVersion)
	b = binary.AppendUvarint(b, a.DeviceID)
	b = binary.AppendUvarint(b, a.TimeMs)
	b = appendFixed32(b, a.ContentCRC)
	b = append(b, byte(a.Kind), a.EventCode, a.Severity)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(a.CoolantC)), nil
}

// Decode parses record bytes written by any version of Encode.
func (AlertCodec) Decode(b []byte) (Alert, error) {
	var a Alert
	r := reader{b: b}
	r.version("alert", alertVersion)
	a.DeviceID = r.uvarint("device id")
	a.TimeMs = r.uvarint("time")
	a.ContentCRC = r.fixed32("content crc")
	a.Kind = AlertKind(r.byte1("kind"))
	a.EventCode = r.byte1("event code")
	a.Severity = r.byte1("severity")
	if raw := r.raw("coolant", 8); raw != nil {
		a.CoolantC = math.Float64frombits(binary.BigEndian.Uint64(raw))
	}
	if err := r.finish("alert"); err != nil {
		return Alert{}, err
	}
	return a, nil
}
