package processors

import (
	"context"
	"strconv"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// The summaries group: per device, tumbling hours of message time with 10
// minutes' grace over telemetry.normalized (timed by SummaryTime),
// aggregated with AddSummary into a windowed table, each window emitted to
// telemetry.summaries once, when it closes. The open window is read from
// the table (SummaryWindows, OpenSummaries).
//
// An hour is kept in panes of SummaryPane (topology.Windows.Panes): a
// package is added to the pane of its time, which holds the readings of
// the packages of those minutes (anywhere in the hour), and the panes are
// merged (MergeSummary) when the hour closes or is read. A package then
// rewrites a pane, not every fix of its device's hour so far: the bytes a
// package writes stop growing through the hour. A pane's length only
// changes with the pipeline drained (see SummaryPane).

// GroupSummaries is the summaries group, before the prefix.
const GroupSummaries = "summaries"

// SummaryGrace is how long after its end an hourly window takes late
// readings (by stream time, the partition's highest message time).
const SummaryGrace = 10 * time.Minute

// SummaryPane is the length of the panes an hourly window is kept in, a
// thirtieth of the hour: a device sending a message a second in packages
// of 25 rewrites a pane of about 5 packages instead of 24 with 10-minute
// panes (the summaries group's CPU at that density -41%, a package's
// changelog record a third of the bytes; docs/benchmarks.md), for 30
// panes to merge when the hour closes or is read. 1 minute measured no
// better. A package handled again across a change of this length (a
// replay, or dedupe re-emitting it after a crash) goes to a pane other
// than the one holding it and counts twice: change it with the pipeline
// drained (CHANGELOG.md).
const SummaryPane = 2 * time.Minute

// descSummaries describes the summaries group.
const descSummaries = "hourly summaries per device by message time (10 minutes' grace), emitted when a window closes"

// addToSummary is the aggregate's add: the window of a fresh aggregate is
// the record's (that of its record time), then AddSummary.
func addToSummary(_ string, rs records.Readings, acc records.SummaryAcc) records.SummaryAcc {
	if acc.WindowEndMs == 0 && len(rs.Items) > 0 {
		t, _ := SummaryTime("", rs)
		acc = InitSummary(rs.DeviceID, SummaryWindow(uint64(t.UnixMilli())))
	}
	AddSummary(&acc, &rs)
	return acc
}

// declareSummaries declares the summaries group.
func (p *Pipeline) declareSummaries() {
	g := p.Topology.Processor(GroupSummaries, topology.WithDescription(descSummaries))
	out := topology.Produce(g, p.Summaries)
	p.SummaryWindows = topology.Aggregate(g, p.Normalized, topology.Tumbling(time.Hour).Grace(SummaryGrace).Panes(SummaryPane),
		func() records.SummaryAcc { return records.SummaryAcc{} },
		addToSummary, records.SummaryAccCodec{},
		topology.Merge(MergeSummary),
		// Late readings are counted (watershed_processor_skipped_total,
		// reason late), not dead-lettered: the dead-letter topic holds the
		// devices' faults, and a late reading is stored by the sink all
		// the same.
		topology.Late(topology.LateSkip),
		topology.Named("hourly"),
		topology.OnClose(func(c *topology.Context, key string, _ topology.Window, acc records.SummaryAcc) error {
			if acc.Messages == 0 {
				return nil
			}
			return out.Emit(c, key, Summarize(&acc))
		}))
}

// OpenSummaries answers the open window of the view's summaries endpoint
// (views.OpenWindows) from the summaries group's windows: a
// topology.WindowView following their changelog, or the test driver's.
type OpenSummaries struct {
	// Windows is the aggregate (Pipeline.SummaryWindows).
	Windows topology.Windowed[records.SummaryAcc]
	// Source reads its stored windows.
	Source topology.WindowSource
	// Now is the clock (default time.Now): the windows read are those
	// starting in the day before it, and a little after, for devices
	// whose clocks run ahead.
	Now func() time.Time
}

// OpenSummary returns the summary so far of the device's newest open
// window, and whether it has one.
func (o OpenSummaries) OpenSummary(_ context.Context, deviceID uint64) (records.Summary, bool, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	ws, err := o.Windows.Fetch(o.Source, strconv.FormatUint(deviceID, 10), t.Add(-24*time.Hour), t.Add(time.Hour))
	if err != nil {
		return records.Summary{}, false, err
	}
	for i := len(ws) - 1; i >= 0; i-- {
		if !ws[i].Closed && ws[i].Value.Messages > 0 {
			return Summarize(&ws[i].Value), true, nil
		}
	}
	return records.Summary{}, false, nil
}
