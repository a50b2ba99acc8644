package records

import (
	"encoding/binary"
	"math"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// SummaryWindowMs is the length of a summary's window: one hour.
const SummaryWindowMs = 60 * 60 * 1000

// Summary is what one device did in one window of message time: the
// record of the summaries topic, the summaries table and the stores. A
// device's window is identified by (DeviceID, WindowStartMs); writing it
// again replaces it.
type Summary struct {
	DeviceID uint64
	// WindowStartMs and WindowEndMs bound the window in Unix
	// milliseconds, start inclusive, end exclusive.
	WindowStartMs, WindowEndMs uint64
	// Messages counts the readings of the window, of every type.
	Messages uint64
	// GPSFixes counts the GPS readings, the samples of AvgSpeedKmh.
	GPSFixes uint64
	// DistanceM is the distance travelled in metres, between the GPS
	// fixes in time order.
	DistanceM float64
	// MaxSpeedKmh and AvgSpeedKmh are the highest and the mean GPS speed.
	MaxSpeedKmh, AvgSpeedKmh float64
	// Harsh counts the harsh events of the window by event code
	// (protocol.EventHarshBrake, ...). Nil when there are none.
	Harsh map[protocol.EventCode]uint64
	// FirstMs and LastMs are the message times of the window's first and
	// last readings.
	FirstMs, LastMs uint64
}

// summaryVersion is the newest Summary format.
//
// Version 1: version byte; DeviceID, WindowStartMs, WindowEndMs, Messages,
// GPSFixes (uvarints); DistanceM, MaxSpeedKmh, AvgSpeedKmh (8 bytes each,
// IEEE 754 big-endian); FirstMs, LastMs (uvarints); the number of harsh
// kinds (uvarint), then per kind in ascending code order its code (1 byte)
// and count (uvarint).
const summaryVersion = 1

// SummaryCodec encodes and decodes Summary records. It implements
// codecs.Codec[Summary].
type SummaryCodec struct{}

// Encode returns the record bytes of s.
func (SummaryCodec) Encode(s Summary) ([]byte, error) {
	b := make([]byte, 0, 64+4*len(s.Harsh))
	b = append(b, summaryVersion)
	for _, v := range [...]uint64{s.DeviceID, s.WindowStartMs, s.WindowEndMs, s.Messages, s.GPSFixes} {
		b = binary.AppendUvarint(b, v)
	}
	for _, f := range [...]float64{s.DistanceM, s.MaxSpeedKmh, s.AvgSpeedKmh} {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = binary.AppendUvarint(b, s.FirstMs)
	b = binary.AppendUvarint(b, s.LastMs)
	b = appendHarsh(b, s.Harsh)
	return b, nil
}

// Decode parses record bytes written by any version of Encode. Harsh
// kinds out of ascending order, or given twice, are corrupt.
func (SummaryCodec) Decode(b []byte) (Summary, error) {
	var s Summary
	r := reader{b: b}
	r.version("summary", summaryVersion)
	s.DeviceID = r.uvarint("device id")
	s.WindowStartMs = r.uvarint("window start")
	s.WindowEndMs = r.uvarint("window end")
	s.Messages = r.uvarint("messages")
	s.GPSFixes = r.uvarint("gps fixes")
	for _, f := range [...]struct {
		what string
		dst  *float64
	}{{"distance", &s.DistanceM}, {"max speed", &s.MaxSpeedKmh}, {"average speed", &s.AvgSpeedKmh}} {
		if raw := r.raw(f.what, 8); raw != nil {
			*f.dst = math.Float64frombits(binary.BigEndian.Uint64(raw))
		}
	}
	s.FirstMs = r.uvarint("first message")
	s.LastMs = r.uvarint("last message")
	s.Harsh = r.harsh()
	if err := r.finish("summary"); err != nil {
		return Summary{}, err
	}
	return s, nil
}
