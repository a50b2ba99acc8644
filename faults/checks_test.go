package faults

import (
	"testing"

	"github.com/watershed-io/watershed/codecs/records"
)

// A copy of a Readings record is recognised as device-state recognises it:
// while its package was received within processors.DefaultReplayHorizon of
// the device's newest one and is among its last records.PackagesLimit
// packages. NormalizedCopies names each copy that comes later, and its
// device.
func TestNormalizedCopiesNamesLateCopies(t *testing.T) {
	readings := func(device uint64, raw, receivedMs int64) *records.Readings {
		return &records.Readings{DeviceID: device, RawOffset: raw, Part: -1, ReceivedMs: receivedMs,
			Items: []records.Reading{{DeviceID: device, TimeMs: uint64(raw), ContentCRC: 1}, {DeviceID: device, TimeMs: uint64(raw), ContentCRC: 2}}}
	}
	n := NewNormalizedCopies()
	off := int64(0)
	// add adds the device's packages from..to, received every msEach ms.
	add := func(device uint64, from, to, msEach int64) {
		for raw := from; raw <= to; raw++ {
			n.Add(0, off, readings(device, raw, raw*msEach))
			off++
		}
	}
	add(1, 1, 10, 1000)
	add(1, 5, 10, 1000) // a short replay: recognised
	add(2, 1, 300, 100)
	add(2, 1, 300, 100) // a replay of 300 packages, within the horizon: recognised
	add(3, 1, 2000, 1000)
	add(3, 200, 210, 1000) // received within the horizon (30 min) of the newest: recognised
	add(3, 1, 10, 1000)    // received more than 30 min before the newest: late
	if got := n.LateCopies(); len(got) != 1 || got[3] != 20 {
		t.Errorf("late copies by device = %v, want device 3's 10 packages of 2 messages", got)
	}
	if c := n.Unrecognised[0]; c.DeviceID != 3 || c.RawOffset != 1 || c.First != 616 || c.Offset != 2627 {
		t.Errorf("first late copy %+v, want device 3's raw offset 1 at offset 2627, first at 616", c)
	}
	if dups, replayed := n.Duplicated(); len(dups) != 0 || replayed != (6+300+11+10)*2 {
		t.Errorf("duplicated %v, replayed %d", dups, replayed)
	}
}
