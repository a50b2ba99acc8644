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
	// AlertSilent (device_silent): the edge has received nothing from the
	// device for the silence threshold, by wall clock.
	AlertSilent AlertKind = 3
	// AlertBack (device_back): a device that was silent sent again.
	AlertBack AlertKind = 4
)

// String returns the kind's name: "event", "coolant", "device_silent",
// "device_back" or "unknown".
func (k AlertKind) String() string {
	switch k {
	case AlertEvent:
		return "event"
	case AlertCoolant:
		return "coolant"
	case AlertSilent:
		return "device_silent"
	case AlertBack:
		return "device_back"
	}
	return "unknown"
}

// Alert is one record of the alerts topic.
type Alert struct {
	DeviceID uint64
	// TimeMs is the message time of the reading that raised an event or
	// coolant alert; for AlertSilent the wall-clock time the silence was
	// due (SinceMs plus the threshold), for AlertBack the edge's receive
	// time of the package that ended it.
	TimeMs     uint64
	ContentCRC uint32
	Kind       AlertKind
	// EventCode and Severity are set for AlertEvent.
	EventCode uint8
	Severity  uint8
	// CoolantC is set for AlertCoolant.
	CoolantC float64
	// SinceMs is set for AlertSilent and AlertBack: the edge's receive
	// time of the device's last package before the silence (format
	// version 2).
	SinceMs uint64
}

// alertVersion is the newest Alert format.
//
// Version 1: version byte, DeviceID, TimeMs (uvarints), ContentCRC (4 bytes
// big-endian), Kind, EventCode, Severity (1 byte each), CoolantC (8 bytes,
// IEEE 754 big-endian).
//
// Version 2 appends SinceMs (uvarint); version 1 is still read (SinceMs
// then is 0).
const alertVersion = 2

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
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(a.CoolantC))
	return binary.AppendUvarint(b, a.SinceMs), nil
}

// Decode parses record bytes written by any version of Encode.
func (AlertCodec) Decode(b []byte) (Alert, error) {
	var a Alert
	r := reader{b: b}
	v := r.version("alert", alertVersion)
	a.DeviceID = r.uvarint("device id")
	a.TimeMs = r.uvarint("time")
	a.ContentCRC = r.fixed32("content crc")
	a.Kind = AlertKind(r.byte1("kind"))
	a.EventCode = r.byte1("event code")
	a.Severity = r.byte1("severity")
	if raw := r.raw("coolant", 8); raw != nil {
		a.CoolantC = math.Float64frombits(binary.BigEndian.Uint64(raw))
	}
	if v >= 2 {
		a.SinceMs = r.uvarint("since")
	}
	if err := r.finish("alert"); err != nil {
		return Alert{}, err
	}
	return a, nil
}
