package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// TimeSources are where the pipeline's results in time are read from.
type TimeSources struct {
	// Summaries is the store's summaries (the sink's store).
	Summaries sinks.SummaryStore
	// Alerts are the records of the alerts topic (of every kind; only
	// device_silent and device_back are compared).
	Alerts []records.Alert
	// View, when set, is compared too: each device's silent and back
	// counts.
	View ViewSource
}

// TimeOptions configure CheckTime.
type TimeOptions struct {
	// Partitions is the pipeline's partition count (default 8): the
	// truth places devices as the pipeline does, keyed by decimal id.
	Partitions int32
	// Silence and Summary are the truth's options; a nil
	// Summary.Partition is the pipeline's placement.
	Silence simulator.SilenceOptions
	Summary simulator.SummaryOptions
	// MayCloseNone lets a run whose message time closed no window pass
	// with none compared (a fault run too short for it); by default that
	// is a mismatch.
	MayCloseNone bool
}

// TimeReport compares the summaries and the silent-device alerts with the
// truth.
type TimeReport struct {
	OK bool `json:"ok"`
	// Windows counts the truth's closed windows; Certain those it knows
	// exactly, Matched those the store holds exactly so, and Uncertain the
	// others (compared only for what they surely hold).
	Windows   int `json:"closed_windows"`
	Certain   int `json:"certain_windows"`
	Matched   int `json:"matched_windows"`
	Uncertain int `json:"uncertain_windows"`
	// Stored counts the summaries in the store of the truth's devices.
	Stored int `json:"stored_summaries"`
	// Silent and Back count the alerts; TruthSilent and TruthBack the
	// certain ones of the truth, and UncertainSilences the silences it
	// cannot call.
	Silent            int `json:"silent_alerts"`
	Back              int `json:"back_alerts"`
	TruthSilent       int `json:"truth_silent"`
	TruthBack         int `json:"truth_back"`
	UncertainSilences int `json:"uncertain_silences"`
	// Mismatches lists the first disagreements; MismatchCount counts all.
	Mismatches    []string `json:"mismatches,omitempty"`
	MismatchCount int      `json:"mismatch_count"`
}

// CheckTime compares the store's summaries and the silence alerts with
// the truth: every closed window the truth knows exactly is stored
// exactly so (counts and times equal, distances and speeds to 1e-9
// relative, since the truth computes them on its own), every stored
// summary is of a closed window of the truth, and each device's
// device_silent and device_back alerts are the truth's silences, with
// their receive times within its bounds (exactly when the truth is
// certain, within its count of uncertain silences otherwise). A truth
// with no window known exactly is a mismatch: nothing was compared.
func CheckTime(ctx context.Context, truth simulator.Truth, src TimeSources, opts TimeOptions) (TimeReport, error) {
	return checkTime(ctx, truth, src, opts, true)
}

// CheckSummaries is CheckTime's comparison of the summaries alone, for a
// run whose silence alerts are not compared (the fault test's: its faults
// hold the pipeline's handling up for longer than a silence's slack). The
// report's alert counts stay zero.
func CheckSummaries(ctx context.Context, truth simulator.Truth, store sinks.SummaryStore, opts TimeOptions) (TimeReport, error) {
	return checkTime(ctx, truth, TimeSources{Summaries: store}, opts, false)
}

func checkTime(ctx context.Context, truth simulator.Truth, src TimeSources, opts TimeOptions, silences bool) (TimeReport, error) {
	var r TimeReport
	miss := func(format string, args ...any) {
		r.MismatchCount++
		if len(r.Mismatches) < maxListed {
			r.Mismatches = append(r.Mismatches, fmt.Sprintf(format, args...))
		}
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 8
	}
	if opts.Summary.Partition == nil {
		n := opts.Partitions
		opts.Summary.Partition = func(id uint64) int32 { return topology.Partition([]byte(strconv.FormatUint(id, 10)), n) }
	}
	if err := checkSummaries(ctx, &r, truth.Summaries(opts.Summary), src.Summaries, miss); err != nil {
		return r, err
	}
	if silences {
		if err := checkSilences(&r, truth.Silences(opts.Silence), src, opts.Silence, miss); err != nil {
			return r, err
		}
	}
	if r.Certain == 0 && !opts.MayCloseNone {
		// Agreeing on nothing proves nothing: a run too short to close a
		// window, or a truth that saw no packages, is not a pass.
		miss("no closed window is known exactly: the summaries were not compared")
	}
	r.OK = r.MismatchCount == 0
	return r, nil
}

func checkSummaries(ctx context.Context, r *TimeReport, windows []simulator.WindowTruth, store sinks.SummaryStore, miss func(string, ...any)) error {
	byDevice := map[uint64][]simulator.WindowTruth{}
	for _, w := range windows {
		byDevice[w.DeviceID] = append(byDevice[w.DeviceID], w)
	}
	for _, id := range slices.Sorted(maps.Keys(byDevice)) {
		stored, err := store.Summaries(ctx, sinks.SummaryQuery{DeviceID: id})
		if err != nil {
			return fmt.Errorf("reconcile: summaries of device %d: %w", id, err)
		}
		r.Stored += len(stored)
		have := make(map[uint64]records.Summary, len(stored))
		for _, s := range stored {
			have[s.WindowStartMs] = s
		}
		for _, w := range byDevice[id] {
			got, ok := have[w.WindowStartMs]
			delete(have, w.WindowStartMs)
			if !w.Closed {
				if ok {
					miss("device %d: window %d stored, but it is not closed in the truth", id, w.WindowStartMs)
				}
				continue
			}
			r.Windows++
			if !w.Certain {
				r.Uncertain++
				if ok && w.Summary != nil && got.Messages > w.Summary.Messages {
					miss("device %d: window %d stored with %d messages, the truth has at most %d", id, w.WindowStartMs, got.Messages, w.Summary.Messages)
				}
				continue
			}
			r.Certain++
			switch {
			case w.Summary == nil && ok:
				miss("device %d: window %d stored, but all its messages came late", id, w.WindowStartMs)
			case w.Summary == nil:
				r.Matched++
			case !ok:
				miss("device %d: closed window %d not stored", id, w.WindowStartMs)
			default:
				if diff := summaryDiff(got, w.Summary); diff != "" {
					miss("device %d: window %d: %s", id, w.WindowStartMs, diff)
				} else {
					r.Matched++
				}
			}
		}
		for start := range have {
			miss("device %d: window %d stored, but the truth has no message in it", id, start)
		}
	}
	return nil
}

// summaryDiff names the first difference of a stored summary from the
// truth's, "" when none.
func summaryDiff(got records.Summary, want *simulator.WindowSummary) string {
	ints := []struct {
		name      string
		got, want uint64
	}{
		{"window end", got.WindowEndMs, want.WindowStartMs + simulator.SummaryWindowMs},
		{"messages", got.Messages, want.Messages}, {"gps fixes", got.GPSFixes, want.GPSFixes},
		{"first message", got.FirstMs, want.FirstMs}, {"last message", got.LastMs, want.LastMs},
	}
	for _, c := range ints {
		if c.got != c.want {
			return fmt.Sprintf("%s %d, truth %d", c.name, c.got, c.want)
		}
	}
	floats := []struct {
		name      string
		got, want float64
	}{
		{"distance", got.DistanceM, want.DistanceM}, {"max speed", got.MaxSpeedKmh, want.MaxSpeedKmh},
		{"average speed", got.AvgSpeedKmh, want.AvgSpeedKmh},
	}
	for _, c := range floats {
		if math.Abs(c.got-c.want) > 1e-9*max(1, math.Abs(c.want)) {
			return fmt.Sprintf("%s %v, truth %v", c.name, c.got, c.want)
		}
	}
	if len(got.Harsh) != len(want.Harsh) {
		return fmt.Sprintf("harsh events %v, truth %v", got.Harsh, want.Harsh)
	}
	for c, n := range want.Harsh {
		if got.Harsh[c] != n {
			return fmt.Sprintf("harsh events %v, truth %v", got.Harsh, want.Harsh)
		}
	}
	return ""
}

func checkSilences(r *TimeReport, truth map[uint64]simulator.DeviceSilences, src TimeSources, opts simulator.SilenceOptions, miss func(string, ...any)) error {
	th := opts.Threshold.Milliseconds()
	if th <= 0 {
		th = 10 * 60_000 // the truth's default
	}
	silent, back := map[uint64][]records.Alert{}, map[uint64][]records.Alert{}
	seen := map[records.Alert]bool{}
	for _, a := range src.Alerts {
		if a.Kind != records.AlertSilent && a.Kind != records.AlertBack {
			continue
		}
		if seen[a] {
			miss("device %d: %s alert since %d at %d written twice", a.DeviceID, a.Kind, a.SinceMs, a.TimeMs)
			continue
		}
		seen[a] = true
		switch a.Kind {
		case records.AlertSilent:
			silent[a.DeviceID] = append(silent[a.DeviceID], a)
			r.Silent++
		case records.AlertBack:
			back[a.DeviceID] = append(back[a.DeviceID], a)
			r.Back++
		}
	}
	ids := map[uint64]bool{}
	for id := range truth {
		ids[id] = true
	}
	for id := range silent {
		ids[id] = true
	}
	for id := range back {
		ids[id] = true
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		d := truth[id]
		r.UncertainSilences += d.Uncertain
		var wantBack int
		for _, s := range d.Silences {
			if s.Back != nil {
				wantBack++
			}
		}
		r.TruthSilent += len(d.Silences)
		r.TruthBack += wantBack
		gotS, gotB := sortedBySince(silent[id]), sortedBySince(back[id])
		if d.Uncertain == 0 {
			if len(gotS) != len(d.Silences) || len(gotB) != wantBack {
				miss("device %d: %d device_silent and %d device_back alerts, truth %d and %d", id, len(gotS), len(gotB), len(d.Silences), wantBack)
				continue
			}
			bi := 0
			for i, s := range d.Silences {
				a := gotS[i]
				if !s.Since.Contains(int64(a.SinceMs)) || int64(a.TimeMs) != int64(a.SinceMs)+th {
					miss("device %d: device_silent since %d at %d, truth since %d..%d at that plus %d ms", id, a.SinceMs, a.TimeMs, s.Since.FromMs, s.Since.ToMs, th)
				}
				if s.Back == nil {
					continue
				}
				b := gotB[bi]
				bi++
				if b.SinceMs != a.SinceMs || !s.Back.Contains(int64(b.TimeMs)) {
					miss("device %d: device_back at %d since %d, truth at %d..%d since %d", id, b.TimeMs, b.SinceMs, s.Back.FromMs, s.Back.ToMs, a.SinceMs)
				}
			}
		} else if n := len(gotS); n < len(d.Silences) || n > len(d.Silences)+d.Uncertain {
			miss("device %d: %d device_silent alerts, truth %d..%d", id, n, len(d.Silences), len(d.Silences)+d.Uncertain)
		}
		if src.View == nil {
			continue
		}
		st, ok, err := src.View.Get(id)
		if err != nil {
			return fmt.Errorf("reconcile: view of device %d: %w", id, err)
		}
		if ok && (st.SilentAlerts != uint64(len(gotS)) || st.BackAlerts != uint64(len(gotB))) {
			miss("device %d: view counts %d silent and %d back, the alerts topic holds %d and %d", id, st.SilentAlerts, st.BackAlerts, len(gotS), len(gotB))
		}
	}
	return nil
}

func sortedBySince(alerts []records.Alert) []records.Alert {
	out := slices.Clone(alerts)
	slices.SortFunc(out, func(a, b records.Alert) int {
		return cmp.Or(cmp.Compare(a.SinceMs, b.SinceMs), cmp.Compare(a.TimeMs, b.TimeMs))
	})
	return out
}
