package records

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// Fix is one GPS reading of a summary window, what the window's distance
// and speeds are computed from.
type Fix struct {
	TimeMs     uint64
	ContentCRC uint32
	// LatDeg, LonDeg and SpeedKmh are the reading's, in normal units.
	LatDeg, LonDeg, SpeedKmh float64
}

// CompareFix orders fixes by message time, then content CRC, then their
// values bit for bit: a total order, so that sorting gives one sequence
// whatever order the fixes came in.
func CompareFix(a, b Fix) int {
	return cmp.Or(cmp.Compare(a.TimeMs, b.TimeMs), cmp.Compare(a.ContentCRC, b.ContentCRC),
		cmp.Compare(math.Float64bits(a.LatDeg), math.Float64bits(b.LatDeg)),
		cmp.Compare(math.Float64bits(a.LonDeg), math.Float64bits(b.LonDeg)),
		cmp.Compare(math.Float64bits(a.SpeedKmh), math.Float64bits(b.SpeedKmh)))
}

// SummaryAcc is the running aggregate of one device's summary window (the
// windowed table's value): everything from which the window's Summary is
// computed exactly whatever order its readings arrive in. It keeps every
// GPS fix of the window, sorted (a late fix may fall between any two, so
// nothing less gives the distance in time order), and the identities of
// the packages applied, so that a replayed package is applied once.
type SummaryAcc struct {
	DeviceID uint64
	// WindowStartMs and WindowEndMs bound the window, end exclusive.
	WindowStartMs, WindowEndMs uint64
	// Messages counts the readings of every type.
	Messages uint64
	// FirstMs and LastMs are the oldest and newest message times (set
	// once Messages is above 0).
	FirstMs, LastMs uint64
	// Harsh counts harsh events by code (nil when none).
	Harsh map[protocol.EventCode]uint64
	// Fixes are the window's GPS readings, sorted by CompareFix.
	Fixes []Fix
	// Applied holds the identities (ReadingsKey) of the packages applied,
	// ascending.
	Applied []uint64
}

// summaryAccVersion is the newest SummaryAcc format.
//
// Version 1: version byte; DeviceID, WindowStartMs, WindowEndMs, Messages,
// FirstMs, LastMs (uvarints); harsh kinds as in Summary; the fix count
// (uvarint) and per fix the difference of its TimeMs from the previous
// one's (uvarint, the first from 0), ContentCRC (4 bytes big-endian),
// LatDeg, LonDeg, SpeedKmh (each as appendScaled writes it, scales 1e7,
// 1e7 and 10); the applied count (uvarint) and each key (8 bytes
// big-endian). Fixes and keys are in ascending order; a decoder refuses
// any other, so that one aggregate has one encoding.
//
// Version 2 writes LatDeg, LonDeg and SpeedKmh as appendScaledDelta does,
// each against the same field of the fixes before it: a window is
// rewritten with each record, and a device's fixes a second apart differ
// little (a fix takes about 11 bytes instead of 18). Version 1 is still
// read.
const summaryAccVersion = 2

// minFixLen is the fewest bytes a fix takes in a SummaryAcc record.
const minFixLen = 1 + 4 + 3

// SummaryAccCodec encodes and decodes SummaryAcc values. It implements
// codecs.Codec[SummaryAcc].
type SummaryAccCodec struct{}

// Encode returns the record bytes of a. It sorts a's fixes and keys if
// they are not.
func (SummaryAccCodec) Encode(a SummaryAcc) ([]byte, error) {
	b := make([]byte, 0, 48+4*len(a.Harsh)+16*len(a.Fixes)+8*len(a.Applied))
	b = append(b, summaryAccVersion)
	for _, v := range [...]uint64{a.DeviceID, a.WindowStartMs, a.WindowEndMs, a.Messages, a.FirstMs, a.LastMs} {
		b = binary.AppendUvarint(b, v)
	}
	b = appendHarsh(b, a.Harsh)
	fixes := a.Fixes
	if !slices.IsSortedFunc(fixes, CompareFix) {
		fixes = slices.SortedFunc(slices.Values(fixes), CompareFix)
	}
	b = binary.AppendUvarint(b, uint64(len(fixes)))
	var prev uint64
	var lat, lon, speed int64
	for _, f := range fixes {
		b = binary.AppendUvarint(b, f.TimeMs-prev)
		prev = f.TimeMs
		b = appendFixed32(b, f.ContentCRC)
		b = appendScaledDelta(b, f.LatDeg, 1e7, &lat)
		b = appendScaledDelta(b, f.LonDeg, 1e7, &lon)
		b = appendScaledDelta(b, f.SpeedKmh, 10, &speed)
	}
	keys := a.Applied
	if !slices.IsSorted(keys) {
		keys = slices.Sorted(slices.Values(keys))
	}
	return appendKeys(b, keys), nil
}

// Decode parses record bytes written by any version of Encode.
func (SummaryAccCodec) Decode(b []byte) (SummaryAcc, error) {
	var a SummaryAcc
	r := reader{b: b}
	version := r.version("summary aggregate", summaryAccVersion)
	a.DeviceID = r.uvarint("device id")
	a.WindowStartMs = r.uvarint("window start")
	a.WindowEndMs = r.uvarint("window end")
	a.Messages = r.uvarint("messages")
	a.FirstMs = r.uvarint("first message")
	a.LastMs = r.uvarint("last message")
	a.Harsh = r.harsh()
	if n := r.length("fix count", minFixLen); n > 0 {
		// Room for one more: the next record of the window most likely
		// adds a fix, at the end.
		a.Fixes = make([]Fix, n, n+1)
		var prev uint64
		var lat, lon, speed int64
		for i := range a.Fixes {
			f := &a.Fixes[i]
			d := r.uvarint("fix time")
			if d > math.MaxUint64-prev {
				r.fail("fix time")
			}
			f.TimeMs = prev + d
			prev = f.TimeMs
			f.ContentCRC = r.fixed32("fix crc")
			if version == 1 {
				f.LatDeg = r.scaled("fix latitude", 1e7)
				f.LonDeg = r.scaled("fix longitude", 1e7)
				f.SpeedKmh = r.scaled("fix speed", 10)
			} else {
				f.LatDeg = r.scaledDelta("fix latitude", 1e7, &lat)
				f.LonDeg = r.scaledDelta("fix longitude", 1e7, &lon)
				f.SpeedKmh = r.scaledDelta("fix speed", 10, &speed)
			}
			if r.err == nil && i > 0 && CompareFix(a.Fixes[i-1], *f) > 0 {
				r.fail("fixes out of order")
			}
		}
	}
	a.Applied = r.keys("applied")
	for i := 1; i < len(a.Applied); i++ {
		if a.Applied[i-1] >= a.Applied[i] {
			r.fail("applied keys out of order")
		}
	}
	if err := r.finish("summary aggregate"); err != nil {
		return SummaryAcc{}, err
	}
	return a, nil
}

// appendHarsh appends harsh event counts: the number of kinds (uvarint),
// then per kind in ascending code order its code (1 byte) and count
// (uvarint).
func appendHarsh(b []byte, harsh map[protocol.EventCode]uint64) []byte {
	codes := make([]protocol.EventCode, 0, len(harsh))
	for c := range harsh {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	b = binary.AppendUvarint(b, uint64(len(codes)))
	for _, c := range codes {
		b = append(b, byte(c))
		b = binary.AppendUvarint(b, harsh[c])
	}
	return b
}

// harsh reads what appendHarsh wrote; kinds out of ascending order, or
// given twice, are corrupt.
func (r *reader) harsh() map[protocol.EventCode]uint64 {
	n := r.bounded("harsh kinds", math.MaxUint8+1)
	var out map[protocol.EventCode]uint64
	last := -1
	for i := uint64(0); i < n && r.err == nil; i++ {
		c := r.byte1("harsh kind")
		count := r.uvarint("harsh count")
		if int(c) <= last {
			r.fail("harsh kinds out of order")
			break
		}
		last = int(c)
		if out == nil {
			out = make(map[protocol.EventCode]uint64, n)
		}
		out[protocol.EventCode(c)] = count
	}
	return out
}
