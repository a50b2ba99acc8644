package processors

import (
	"fmt"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
)

// BenchmarkDeviceStateRecord is device-state's own work on the state per
// Readings record, which the group does for every package: decode the
// stored state, check and mark the input offset and the package identity,
// apply the readings and the receive time, encode the state to write it.
// The device sends a package every `every`, so that a steady state keeps
// min(records.PackagesLimit, DefaultReplayHorizon/every) identities; its
// packages are 37 raw offsets apart (other devices share its partition).
// The state's encoded size is reported as state-bytes.
func BenchmarkDeviceStateRecord(b *testing.B) {
	for _, every := range []time.Duration{time.Hour, 25 * time.Second, 2500 * time.Millisecond, 300 * time.Millisecond} {
		b.Run(fmt.Sprint("every=", every), func(b *testing.B) {
			const device = 7
			codec := records.DeviceStateCodec{}
			src := records.InputSource("telemetry.normalized", 3)
			rs := records.Readings{DeviceID: device, Part: 2_833_000, Version: 2, Firmware: 0x0102, ReceivedMs: 1_764_000_000_000}
			types := []protocol.MsgType{protocol.TypeGPS, protocol.TypeAccel, protocol.TypeEngine, protocol.TypeBattery, protocol.TypeEvent}
			for i := range 25 {
				rs.Items = append(rs.Items, records.Reading{DeviceID: device, TimeMs: uint64(rs.ReceivedMs) + uint64(i)*40, ContentCRC: uint32(i), Type: types[i%len(types)]})
			}
			var offset int64
			next := func() {
				offset++
				rs.RawOffset += 37
				rs.ReceivedMs += every.Milliseconds()
				for i := range rs.Items {
					rs.Items[i].TimeMs += uint64(every.Milliseconds())
				}
			}
			record := func(enc []byte) []byte {
				st, err := codec.Decode(enc)
				if err != nil {
					b.Fatal(err)
				}
				if st.Replayed(src, offset) {
					b.Fatal("taken for a replay")
				}
				st.MarkInput(src, offset)
				if !applyOnce(&st, &rs, DefaultReplayHorizon) {
					b.Fatal("taken for a copy")
				}
				NoteReceived(&st, rs.ReceivedMs, DefaultSilence)
				enc, err = codec.Encode(st)
				if err != nil {
					b.Fatal(err)
				}
				return enc
			}
			enc, _ := codec.Encode(records.DeviceState{})
			for range 2 * records.PackagesLimit { // the steady state
				next()
				enc = record(enc)
			}
			for b.Loop() {
				next()
				enc = record(enc)
			}
			b.ReportMetric(float64(len(enc)), "state-bytes")
		})
	}
}
