package simulator

import (
	"hash/crc32"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// These are PROTOCOL.md's validation limits, restated here so that the
// truth does not depend on the pipeline's own validation code.
const (
	// staleBeforeMs is 2020-01-01T00:00:00Z: earlier messages are stale.
	staleBeforeMs = 1_577_836_800_000
	// futureSlackMs: a message more than 5 minutes after the edge received
	// its package is from the future.
	futureSlackMs = 5 * 60 * 1000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ContentCRC returns the content CRC of a payload: the CRC-32C of the
// payload with its 22 time-offset bits (bits 4 to 25, MSB-first) set to
// zero. With the device id and the message time, it is a message's
// identity across packages. payload is not modified.
func ContentCRC(payload []byte) uint32 {
	if len(payload) < 4 {
		return crc32.Checksum(payload, castagnoli)
	}
	var buf [16]byte
	p := buf[:0]
	if len(payload) > len(buf) {
		p = make([]byte, 0, len(payload))
	}
	p = append(p, payload...)
	p[0] &= 0xf0
	p[1], p[2] = 0, 0
	p[3] &= 0x3f
	return crc32.Checksum(p, castagnoli)
}

// validate returns the validation stage's verdict on a decoded message of a
// package received at receivedMs: ReasonNone when it is valid, else
// out_of_range, stale_timestamp or future_timestamp. Values are checked
// before times, as any order gives one reason per message and the
// simulator never breaks both.
func validate(m *protocol.Message, receivedMs uint64) protocol.Reason {
	if !inRange(m) {
		return protocol.ReasonOutOfRange
	}
	if m.TimeMs < staleBeforeMs {
		return protocol.ReasonStaleTimestamp
	}
	if m.TimeMs > receivedMs+futureSlackMs {
		return protocol.ReasonFutureTimestamp
	}
	return protocol.ReasonNone
}

// inRange checks PROTOCOL.md's physical limits.
func inRange(m *protocol.Message) bool {
	switch m.Type {
	case protocol.TypeGPS:
		return m.LatE7 >= -900_000_000 && m.LatE7 <= 900_000_000 &&
			m.LonE7 >= -1_800_000_000 && m.LonE7 <= 1_800_000_000 &&
			m.SpeedDkmh <= 3000 && m.HeadingDeg <= 359
	case protocol.TypeAccel:
		ok := func(v int16) bool { return v >= -16000 && v <= 16000 }
		return ok(m.XMg) && ok(m.YMg) && ok(m.ZMg)
	case protocol.TypeEngine:
		return m.RPM <= 12000 && m.CoolantRaw <= 190 && m.FuelPct <= 100
	case protocol.TypeEvent:
		return m.Code >= 1 && m.Code <= 8 && m.Severity <= 5
	case protocol.TypeBattery:
		return m.Millivolts <= 36000
	}
	return false
}
