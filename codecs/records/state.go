package records

import (
	"encoding/binary"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// DeviceState is one device's current state: the device-state table's
// value and what the view API answers.
type DeviceState struct {
	DeviceID uint64
	// Messages counts the unique valid messages stored.
	Messages uint64
	// Duplicates counts dropped repeats, within and across packages.
	Duplicates uint64
	// Invalid counts messages sent to the dead-letter topic (decode and
	// validation rejections).
	Invalid uint64
	// PackagesRejected counts whole packages sent to the dead-letter topic
	// (by the edge or the decoder).
	PackagesRejected uint64
	// LastSeenMs is the newest stored message time, Unix ms (0: none).
	LastSeenMs uint64
	// Version is the protocol version of the device's newest package.
	Version uint8
	// Firmware is the firmware of the newest version 2 package (major<<8 |
	// minor; 0 when unknown).
	Firmware uint16
	// Latest holds the newest reading of each type by message time, at most
	// one per type, ordered by type.
	Latest []Reading
}

// LatestOf returns the newest reading of type t, if any.
func (s *DeviceState) LatestOf(t protocol.MsgType) (Reading, bool) {
	for _, r := range s.Latest {
		if r.Type == t {
			return r, true
		}
	}
	return Reading{}, false
}

// Observe makes r the latest reading of its type unless a newer one is
// already there, so that a late message never moves state back in time. It
// reports whether r was taken.
func (s *DeviceState) Observe(r Reading) bool {
	for i := range s.Latest {
		if s.Latest[i].Type == r.Type {
			if r.TimeMs < s.Latest[i].TimeMs {
				return false
			}
			s.Latest[i] = r
			return true
		}
	}
	i := 0
	for i < len(s.Latest) && s.Latest[i].Type < r.Type {
		i++
	}
	s.Latest = append(s.Latest, Reading{})
	copy(s.Latest[i+1:], s.Latest[i:])
	s.Latest[i] = r
	return true
}

// deviceStateVersion is the newest DeviceState format.
//
// Version 1: version byte, DeviceID, Messages, Duplicates, Invalid,
// PackagesRejected, LastSeenMs (uvarints), Version (1 byte), Firmware
// (uvarint), the count of latest readings (uvarint) and each as TimeMs
// (uvarint) and the reading body of the Readings format.
const deviceStateVersion = 1

// DeviceStateCodec encodes and decodes DeviceState values. It implements
// codecs.Codec[DeviceState].
type DeviceStateCodec struct{}

// Encode returns the record bytes of s.
func (DeviceStateCodec) Encode(s DeviceState) ([]byte, error) {
	b := make([]byte, 0, 48+32*len(s.Latest))
	b = append(b, deviceStateVersion)
	for _, v := range []uint64{s.DeviceID, s.Messages, s.Duplicates, s.Invalid, s.PackagesRejected, s.LastSeenMs} {
		b = binary.AppendUvarint(b, v)
	}
	b = append(b, s.Version)
	b = binary.AppendUvarint(b, uint64(s.Firmware))
	b = binary.AppendUvarint(b, uint64(len(s.Latest)))
	for i := range s.Latest {
		b = binary.AppendUvarint(b, s.Latest[i].TimeMs)
		b = appendReadingBody(b, &s.Latest[i])
	}
	return b, nil
}

// Decode parses record bytes written by any version of Encode.
func (DeviceStateCodec) Decode(b []byte) (DeviceState, error) {
	var s DeviceState
	r := reader{b: b}
	r.version("device state", deviceStateVersion)
	s.DeviceID = r.uvarint("device id")
	s.Messages = r.uvarint("messages")
	s.Duplicates = r.uvarint("duplicates")
	s.Invalid = r.uvarint("invalid")
	s.PackagesRejected = r.uvarint("packages rejected")
	s.LastSeenMs = r.uvarint("last seen")
	s.Version = r.byte1("version")
	fw := r.uvarint("firmware")
	if fw > 0xffff {
		r.fail("firmware")
	}
	s.Firmware = uint16(fw)
	if n := r.length("latest count", minReadingLen+1); n > 0 {
		s.Latest = make([]Reading, n)
		for i := range s.Latest {
			s.Latest[i].DeviceID = s.DeviceID
			s.Latest[i].TimeMs = r.uvarint("latest time")
			r.readingBody(&s.Latest[i])
		}
	}
	if err := r.finish("device state"); err != nil {
		return DeviceState{}, err
	}
	return s, nil
}
