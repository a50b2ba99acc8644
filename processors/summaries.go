package processors

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
)

// The hourly summary of a device, as a pure aggregator over the pipeline's
// normalized readings: the windowed aggregation of the summaries group
// (summariesgroup.go: topology.Aggregate over telemetry.normalized timed by
// its newest reading, tumbling hours with 10 minutes' grace) starts from the zero
// records.SummaryAcc, calls AddSummary for each record and Summarize when
// the window closes. The result depends only on the set of readings
// (and packages) added, not on the order they arrive in: the aggregate
// keeps every GPS fix of the window sorted by message time (a fix that
// arrives late may fall between any two, so nothing less gives the
// distance in time order exactly), and Summarize adds up distances and
// speeds along that one order.

// EarthRadiusM is the radius of the haversine distance: the mean Earth
// radius (IUGG), in metres.
const EarthRadiusM = 6_371_008.8

// HaversineM returns the great-circle distance in metres between two
// points given in degrees.
func HaversineM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	sLat, sLon := math.Sin(dLat/2), math.Sin(dLon/2)
	h := sLat*sLat + math.Cos(lat1*rad)*math.Cos(lat2*rad)*sLon*sLon
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(min(h, 1)))
}

// HarshEvent reports whether an event code counts as a harsh event in a
// summary: harsh braking, acceleration and cornering.
func HarshEvent(code protocol.EventCode) bool {
	switch code {
	case protocol.EventHarshBrake, protocol.EventHarshAccel, protocol.EventHarshCorner:
		return true
	}
	return false
}

// SummaryWindow returns the start of the hourly window holding message
// time ms.
func SummaryWindow(ms uint64) uint64 { return ms - ms%records.SummaryWindowMs }

// InitSummary returns the empty aggregate of a device's window starting at
// startMs.
func InitSummary(deviceID, startMs uint64) records.SummaryAcc {
	return records.SummaryAcc{DeviceID: deviceID, WindowStartMs: startMs, WindowEndMs: startMs + records.SummaryWindowMs}
}

// SummaryTime is the record time of telemetry.normalized
// (Stream.TimedBy), and so of the hourly windows: the message time of its
// newest reading, so that stream time is the highest message time handled
// (what the simulator's truth assumes). A record without readings has
// none: it adds nothing, and must not move stream time by its Kafka
// timestamp (its produce time, which would close windows early). A
// record's readings share one hour when the dedupe bucket divides an hour
// (see Config.DedupeBucket).
func SummaryTime(_ string, rs records.Readings) (time.Time, bool) {
	if len(rs.Items) == 0 {
		return time.Time{}, false
	}
	ms := rs.Items[0].TimeMs
	for _, r := range rs.Items[1:] {
		ms = max(ms, r.TimeMs)
	}
	return time.UnixMilli(int64(ms)), true
}

// SplitByWindow splits a package's readings by hourly window, in the order
// the windows first appear, each part with the package's other fields (and
// identity: each window's aggregate applies its part once). A record
// goes to the window of its SummaryTime only, so a package whose readings
// span two hours must be split before it is aggregated; the dedupe
// stage's bucket parts never span two when the bucket divides an hour (the
// default, 10 minutes, does), its unbucketed part may.
func SplitByWindow(rs records.Readings) []records.Readings {
	var out []records.Readings
	index := map[uint64]int{}
	for _, r := range rs.Items {
		w := SummaryWindow(r.TimeMs)
		i, ok := index[w]
		if !ok {
			i = len(out)
			index[w] = i
			part := rs
			part.Items = nil
			out = append(out, part)
		}
		out[i].Items = append(out[i].Items, r)
	}
	return out
}

// AddSummary adds the readings of rs that fall in acc's window to acc and
// reports whether it changed acc. The caller gives acc its window
// (InitSummary; the summaries group's that of the record's SummaryTime): an
// aggregate without one (the zero SummaryAcc) takes nothing. A package
// with an identity (see records.Readings.HasIdentity) is added once: a
// replayed record changes nothing.
func AddSummary(acc *records.SummaryAcc, rs *records.Readings) bool {
	var key uint64
	if rs.HasIdentity() {
		key = records.ReadingsKey(rs.RawOffset, rs.Part)
		if _, done := slices.BinarySearch(acc.Applied, key); done {
			return false
		}
	}
	added := false
	for i := range rs.Items {
		added = AddReading(acc, &rs.Items[i]) || added
	}
	if added && rs.HasIdentity() {
		i, _ := slices.BinarySearch(acc.Applied, key)
		acc.Applied = slices.Insert(acc.Applied, i, key)
	}
	return added
}

// AddReading adds one reading to acc if it falls in acc's window, and
// reports whether it did. It does not recognise a reading added before:
// AddSummary applies whole packages once.
func AddReading(acc *records.SummaryAcc, r *records.Reading) bool {
	if r.TimeMs < acc.WindowStartMs || r.TimeMs >= acc.WindowEndMs {
		return false
	}
	if acc.Messages == 0 {
		acc.FirstMs, acc.LastMs = r.TimeMs, r.TimeMs
	}
	acc.Messages++
	acc.FirstMs = min(acc.FirstMs, r.TimeMs)
	acc.LastMs = max(acc.LastMs, r.TimeMs)
	switch r.Type {
	case protocol.TypeGPS:
		f := records.Fix{TimeMs: r.TimeMs, ContentCRC: r.ContentCRC, LatDeg: r.LatDeg, LonDeg: r.LonDeg, SpeedKmh: r.SpeedKmh}
		i, _ := slices.BinarySearchFunc(acc.Fixes, f, records.CompareFix)
		acc.Fixes = slices.Insert(acc.Fixes, i, f)
	case protocol.TypeEvent:
		if code := protocol.EventCode(r.EventCode); float64(code) == r.EventCode && HarshEvent(code) {
			if acc.Harsh == nil {
				acc.Harsh = make(map[protocol.EventCode]uint64)
			}
			acc.Harsh[code]++
		}
	}
	return true
}

// MergeSummary combines two parts of one device's window (the summaries
// group's panes: each holds the packages whose time falls in it, with
// their readings anywhere in the hour): counts and harsh events add up,
// the fixes and package identities merge in order. The result is the
// aggregate the two parts' packages would have made together, so its
// summary is exactly the same, provided a package (identity) is in one
// part only: the group's panes take a record by its time, so a replayed
// package goes to the pane holding it. An empty part (the zero
// SummaryAcc) changes nothing. It is associative and does not depend on
// the parts' order, as the framework's tree of pane merges and a change
// of pane length need.
func MergeSummary(_ string, a, b records.SummaryAcc) records.SummaryAcc {
	if a.WindowEndMs == 0 {
		return b
	}
	if b.WindowEndMs == 0 || b.Messages == 0 && len(b.Applied) == 0 {
		return a
	}
	out := a
	switch {
	case a.Messages == 0:
		out.FirstMs, out.LastMs = b.FirstMs, b.LastMs
	case b.Messages > 0:
		out.FirstMs, out.LastMs = min(a.FirstMs, b.FirstMs), max(a.LastMs, b.LastMs)
	}
	out.Messages = a.Messages + b.Messages
	if len(b.Harsh) > 0 {
		out.Harsh = make(map[protocol.EventCode]uint64, len(a.Harsh)+len(b.Harsh))
		for c, n := range a.Harsh {
			out.Harsh[c] = n
		}
		for c, n := range b.Harsh {
			out.Harsh[c] += n
		}
	}
	out.Fixes = mergeSorted(a.Fixes, b.Fixes, records.CompareFix)
	out.Applied = mergeSorted(a.Applied, b.Applied, cmp.Compare[uint64])
	return out
}

// mergeSorted merges two sorted lists into a new one, sorted.
func mergeSorted[T any](a, b []T, compare func(T, T) int) []T {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]T, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if compare(b[j], a[i]) < 0 {
			out = append(out, b[j])
			j++
		} else {
			out = append(out, a[i])
			i++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// Summarize returns the summary of an aggregate: the distance along its
// fixes in time order, their highest and mean speed, and its counts. An
// aggregate nothing was added to (Messages 0) has no summary to emit.
func Summarize(acc *records.SummaryAcc) records.Summary {
	s := records.Summary{
		DeviceID: acc.DeviceID, WindowStartMs: acc.WindowStartMs, WindowEndMs: acc.WindowEndMs,
		Messages: acc.Messages, GPSFixes: uint64(len(acc.Fixes)), FirstMs: acc.FirstMs, LastMs: acc.LastMs,
	}
	if len(acc.Harsh) > 0 {
		s.Harsh = make(map[protocol.EventCode]uint64, len(acc.Harsh))
		for c, n := range acc.Harsh {
			s.Harsh[c] = n
		}
	}
	// The fixes are sorted by decode; sort a copy of an aggregate built by
	// hand rather than trust it.
	fixes := acc.Fixes
	if !slices.IsSortedFunc(fixes, records.CompareFix) {
		fixes = slices.SortedFunc(slices.Values(fixes), records.CompareFix)
	}
	var speedSum float64
	for i, f := range fixes {
		if i > 0 {
			p := fixes[i-1]
			s.DistanceM += HaversineM(p.LatDeg, p.LonDeg, f.LatDeg, f.LonDeg)
		}
		s.MaxSpeedKmh = max(s.MaxSpeedKmh, f.SpeedKmh)
		speedSum += f.SpeedKmh
	}
	if len(fixes) > 0 {
		s.AvgSpeedKmh = speedSum / float64(len(fixes))
	}
	return s
}
