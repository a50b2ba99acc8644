package faults

import (
	"testing"

	"github.com/watershed-io/watershed/codecs/records"
)

// A copy of a Readings record is recognised while its key is among the
// device's last records.AppliedLimit; a run of copies longer than that is
// counted again in full (each copy pushes out the key of a later one), and
// NormalizedCopies names each such copy and its device.
func TestNormalizedCopiesNamesLateCopies(t *testing.T) {
	readings := func(device uint64, raw int64) *records.Readings {
		return &records.Readings{DeviceID: device, RawOffset: raw, Part: -1,
			Items: []records.Reading{{DeviceID: device, TimeMs: uint64(raw), ContentCRC: 1}, {DeviceID: device, TimeMs: uint64(raw), ContentCRC: 2}}}
	}
	n := NewNormalizedCopies()
	off := int64(0)
	add := func(device uint64, from, to int64) {
		for raw := from; raw <= to; raw++ {
			n.Add(0, off, readings(device, raw))
			off++
		}
	}
	add(1, 1, 10)
	add(1, 5, 10) // a short replay: recognised
	add(2, 1, 100)
	add(2, 1, 100) // a replay of 100 packages of device 2
	if got := n.LateCopies(); len(got) != 1 || got[2] != 200 {
		t.Errorf("late copies by device = %v, want device 2's 100 packages of 2 messages", got)
	}
	if c := n.Unrecognised[0]; c.DeviceID != 2 || c.RawOffset != 1 || c.First != 16 || c.Offset != 116 {
		t.Errorf("first late copy %+v, want device 2's raw offset 1 at offset 116, first at 16", c)
	}
	if dups, replayed := n.Duplicated(); len(dups) != 0 || replayed != 6*2+100*2 {
		t.Errorf("duplicated %v, replayed %d", dups, replayed)
	}
}
