package simulator

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// The truth in time: the hourly summaries of closed windows and the
// silent-device alerts the pipeline should produce. Like the rest of the
// truth, it is computed from how the packages were built, not with the
// pipeline's code (its haversine and window rules are written again here).

// Interval bounds an instant: FromMs to ToMs inclusive, Unix ms. The
// zero Interval is unknown.
type Interval struct {
	FromMs, ToMs int64
}

// Between returns the interval from a to b, widened to whole
// milliseconds.
func Between(a, b time.Time) Interval {
	from, to := a.UnixMilli(), b.UnixMilli()
	if b.Sub(time.UnixMilli(to)) > 0 {
		to++
	}
	return Interval{FromMs: from, ToMs: max(from, to)}
}

// Known reports whether the interval is set.
func (i Interval) Known() bool { return i != Interval{} }

// Contains reports whether ms lies in the interval.
func (i Interval) Contains(ms int64) bool { return ms >= i.FromMs && ms <= i.ToMs }

// Silence is one expected silence of a device: a device_silent alert whose
// SinceMs (the edge's receive time of the device's last package before it)
// lies in Since, raised at that time plus the threshold; and, when Back is
// set, a device_back alert at the receive time of the package that ended
// it, within Back.
type Silence struct {
	Since Interval
	Back  *Interval
}

// DeviceSilences is the silence truth of one device: the certain
// silences, in time order, and how many more there may be.
type DeviceSilences struct {
	Silences []Silence
	// Uncertain counts the gaps between receive times (and the trailing
	// one) that may or may not have made a silence: their bounds straddle
	// the threshold within the slack, the receive times are unknown, or
	// attempts of the device had an unknown fate. While it is 0, Silences
	// are exactly the alerts to expect.
	Uncertain int
}

// SilenceOptions configure Truth.Silences.
type SilenceOptions struct {
	// Threshold is how long a device must have sent nothing (default 10
	// minutes, the pipeline's).
	Threshold time.Duration
	// AsOf is the wall-clock time the alerts are compared at: a device
	// silent since before AsOf minus the threshold has its device_silent.
	AsOf time.Time
	// Slack is how far apart a gap and the threshold must be for the truth
	// to call it (default 5 s): the pipeline handles a package within it
	// of its receipt, and a timer fires within it of its due time. Gaps
	// closer to the threshold are uncertain.
	Slack time.Duration
}

// Silences returns the expected silences of every device with an accepted
// package, by device id.
//
// The model: the pipeline sees a device's packages that reach the
// normalized stream (accepted by the edge and not rejected whole by the
// decoder), each with the edge's receive time, which the truth bounds by
// the request's send and answer times (ApplyAt). Sorted by those bounds,
// a gap between consecutive packages that surely exceeds the threshold
// (by more than Slack) is a silence, with device_back at the next
// package; one that surely stays below it is none; any other is
// uncertain. After the last package, the device is silent by AsOf when
// even the latest bound of its receipt plus the threshold and Slack is
// before AsOf.
func (t *Truth) Silences(opts SilenceOptions) map[uint64]DeviceSilences {
	if opts.Threshold <= 0 {
		opts.Threshold = 10 * time.Minute
	}
	if opts.Slack <= 0 {
		opts.Slack = 5 * time.Second
	}
	th, slack, asOf := opts.Threshold.Milliseconds(), opts.Slack.Milliseconds(), opts.AsOf.UnixMilli()
	out := make(map[uint64]DeviceSilences, len(t.Devices))
	for id, d := range t.Devices {
		var ds DeviceSilences
		if d.Uncertain > 0 || d.Unclocked > 0 {
			ds.Uncertain++ // attempts of unknown fate or time: no exact count
		}
		recv := slices.Clone(d.Received)
		slices.SortFunc(recv, func(a, b Interval) int { return cmp.Or(cmp.Compare(a.FromMs, b.FromMs), cmp.Compare(a.ToMs, b.ToMs)) })
		// latest bounds the receipt of the newest package so far: it came
		// after latest.FromMs and by latest.ToMs.
		var latest Interval
		for i, r := range recv {
			if i > 0 {
				lo, hi := r.FromMs-latest.ToMs, r.ToMs-latest.FromMs
				switch {
				case lo > th+slack:
					back := r
					ds.Silences = append(ds.Silences, Silence{Since: latest, Back: &back})
				case hi < th-slack:
				default:
					ds.Uncertain++
				}
			}
			latest = Interval{FromMs: max(latest.FromMs, r.FromMs), ToMs: max(latest.ToMs, r.ToMs)}
		}
		if len(recv) > 0 {
			switch {
			case latest.ToMs+th+slack < asOf:
				ds.Silences = append(ds.Silences, Silence{Since: latest})
			case latest.FromMs+th > asOf:
			default:
				ds.Uncertain++
			}
		}
		if len(recv) > 0 || ds.Uncertain > 0 {
			out[id] = ds
		}
	}
	return out
}

// SummaryWindowMs is the length of a summary window: an hour of message
// time, windows starting at whole hours since the Unix epoch.
const SummaryWindowMs = 60 * 60 * 1000

// EarthRadiusM is the radius of the distances: the mean Earth radius.
const EarthRadiusM = 6_371_008.8

// WindowSummary is the expected summary of one device's window, in the
// units and with the fields of the pipeline's summaries.
type WindowSummary struct {
	DeviceID                 uint64
	WindowStartMs            uint64
	Messages, GPSFixes       uint64
	DistanceM                float64
	MaxSpeedKmh, AvgSpeedKmh float64
	// Harsh counts harsh braking, acceleration and cornering events by
	// event code.
	Harsh           map[protocol.EventCode]uint64
	FirstMs, LastMs uint64
}

// WindowTruth is what the pipeline should make of one device's window.
type WindowTruth struct {
	DeviceID      uint64
	WindowStartMs uint64
	// Closed is set when the window ended, plus the grace, before the
	// stream time of its partition does by the end of the run: the
	// pipeline emits it.
	Closed bool
	// Certain is set when every message of the window is surely on time
	// or surely late (and none is of unknown fate): Summary is then
	// exactly what the pipeline emits (nil: nothing, every message late).
	Certain bool
	Summary *WindowSummary
	// Late counts the messages surely dropped as late.
	Late int
}

// SummaryOptions configure Truth.Summaries.
type SummaryOptions struct {
	// Partition returns the partition of a device's records (the
	// pipeline's partitioner and count). Nil: one partition.
	Partition func(deviceID uint64) int32
	// Grace is how long after its end a window takes late records
	// (default 10 minutes).
	Grace time.Duration
	// Settle bounds how long after its receipt the pipeline handles a
	// message (default 30 s): a message of a window surely counts when
	// it was received Settle before any message that closes the window
	// could have been, and is surely late when it was received Settle
	// after one surely had.
	Settle time.Duration
}

// Summaries returns the expected summary of every device window holding a
// stored message, ordered by device and window start.
//
// The model: a partition's stream time is the highest message time of the
// stored messages the pipeline has handled on it; a window closes when
// stream time reaches its end plus Grace, and a message handled after
// that is late and left out. The truth knows when each message was
// received (bounded, see ApplyAt) and that the pipeline handles it within
// Settle; from those it decides which messages surely count, which are
// surely late, and calls a window uncertain when one may be either. A
// device whose stored messages a pruning Ledger forgot has only uncertain
// windows.
func (t *Truth) Summaries(opts SummaryOptions) []WindowTruth {
	if opts.Grace <= 0 {
		opts.Grace = 10 * time.Minute
	}
	if opts.Settle <= 0 {
		opts.Settle = 30 * time.Second
	}
	part := opts.Partition
	if part == nil {
		part = func(uint64) int32 { return 0 }
	}
	grace, settle := uint64(opts.Grace.Milliseconds()), opts.Settle.Milliseconds()
	// Per partition, the stored messages by time, with the earliest and
	// latest receipt of those at or after each (suffix minima): when
	// stream time reached a given time at the soonest and surely.
	type partIndex struct {
		times           []uint64
		soonest, surely []int64
	}
	byPart := map[int32][]StoredMessage{}
	for _, d := range t.Devices {
		p := part(d.ID)
		for _, m := range d.Stored {
			byPart[p] = append(byPart[p], m)
		}
	}
	index := map[int32]*partIndex{}
	for p, msgs := range byPart {
		slices.SortFunc(msgs, func(a, b StoredMessage) int { return cmp.Compare(a.TimeMs, b.TimeMs) })
		ix := &partIndex{times: make([]uint64, len(msgs)), soonest: make([]int64, len(msgs)+1), surely: make([]int64, len(msgs)+1)}
		ix.soonest[len(msgs)], ix.surely[len(msgs)] = math.MaxInt64, math.MaxInt64
		for i := len(msgs) - 1; i >= 0; i-- {
			ix.times[i] = msgs[i].TimeMs
			from, to := msgs[i].Received.FromMs, msgs[i].Received.ToMs+settle
			if !msgs[i].Received.Known() {
				from, to = math.MinInt64, math.MaxInt64 // unknown: could be any time
			}
			ix.soonest[i] = min(ix.soonest[i+1], from)
			ix.surely[i] = min(ix.surely[i+1], to)
		}
		index[p] = ix
	}

	var out []WindowTruth
	for _, d := range t.Devices {
		windows := map[uint64][]StoredMessage{}
		for _, m := range d.Stored {
			w := m.TimeMs - m.TimeMs%SummaryWindowMs
			windows[w] = append(windows[w], m)
		}
		possible := map[uint64]bool{}
		for id := range d.Possible {
			possible[id.TimeMs-id.TimeMs%SummaryWindowMs] = true
		}
		ix := index[part(d.ID)]
		for w, msgs := range windows {
			wt := WindowTruth{DeviceID: d.ID, WindowStartMs: w, Certain: d.Forgotten == 0 && !possible[w]}
			closeAt := w + SummaryWindowMs + grace
			k, _ := slices.BinarySearch(ix.times, closeAt)
			soonest, surely := ix.soonest[k], ix.surely[k]
			wt.Closed = k < len(ix.times)
			var kept []StoredMessage
			for _, m := range msgs {
				switch {
				case !m.Received.Known():
					wt.Certain = false
					kept = append(kept, m)
				case m.Received.ToMs+settle < soonest:
					kept = append(kept, m) // handled before the window could close
				case m.Received.FromMs > surely:
					wt.Late++ // handled after it surely closed
				default:
					wt.Certain = false
					kept = append(kept, m)
				}
			}
			if len(kept) > 0 {
				s := summarize(d.ID, w, kept)
				wt.Summary = &s
			}
			out = append(out, wt)
		}
	}
	slices.SortFunc(out, func(a, b WindowTruth) int {
		return cmp.Or(cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.WindowStartMs, b.WindowStartMs))
	})
	return out
}

// summarize computes the summary of a window's messages: GPS fixes in
// time order (then content CRC) for the distance, their speeds' maximum
// and mean, harsh events by code, first and last message time.
func summarize(device, window uint64, msgs []StoredMessage) WindowSummary {
	slices.SortFunc(msgs, func(a, b StoredMessage) int {
		return cmp.Or(cmp.Compare(a.TimeMs, b.TimeMs), cmp.Compare(a.ContentCRC, b.ContentCRC))
	})
	s := WindowSummary{DeviceID: device, WindowStartMs: window, Messages: uint64(len(msgs)),
		FirstMs: msgs[0].TimeMs, LastMs: msgs[len(msgs)-1].TimeMs}
	var prevLat, prevLon, speeds float64
	for _, m := range msgs {
		switch m.Type {
		case protocol.TypeGPS:
			lat, lon, speed := float64(m.Message.LatE7)/1e7, float64(m.Message.LonE7)/1e7, float64(m.Message.SpeedDkmh)/10
			if s.GPSFixes > 0 {
				s.DistanceM += greatCircleM(prevLat, prevLon, lat, lon)
			}
			prevLat, prevLon = lat, lon
			s.GPSFixes++
			s.MaxSpeedKmh = max(s.MaxSpeedKmh, speed)
			speeds += speed
		case protocol.TypeEvent:
			switch c := protocol.EventCode(m.Message.Code); c {
			case protocol.EventHarshBrake, protocol.EventHarshAccel, protocol.EventHarshCorner:
				if s.Harsh == nil {
					s.Harsh = map[protocol.EventCode]uint64{}
				}
				s.Harsh[c]++
			}
		}
	}
	if s.GPSFixes > 0 {
		s.AvgSpeedKmh = speeds / float64(s.GPSFixes)
	}
	return s
}

// greatCircleM is the haversine distance in metres between two points in
// degrees.
func greatCircleM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	a := math.Sin((lat2 - lat1) * rad / 2)
	b := math.Sin((lon2 - lon1) * rad / 2)
	h := a*a + math.Cos(lat1*rad)*math.Cos(lat2*rad)*b*b
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(min(h, 1)))
}
