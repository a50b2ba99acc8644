package reconcile_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/internal/reconcile"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/topology"
)

const (
	hour  = int64(simulator.SummaryWindowMs)
	t0    = int64(1_764_000_000_000) - 1_764_000_000_000%hour
	grace = 10 * 60_000
	parts = 2
)

// sent is one accepted package: its device, messages and receive time.
type sent struct {
	device   uint64
	msgs     []protocol.Message
	received int64
}

// timeFixture plays three devices for four hours of message time, one
// package a minute each, with pauses of 20 minutes (silences), late
// messages, and packages in flight out of order: the packages and the
// truth of them.
func timeFixture(t *testing.T) ([]sent, simulator.Truth) {
	rng := rand.New(rand.NewPCG(14, 14))
	l := simulator.NewLedger()
	var pkgs []sent
	seq := 0
	for _, dev := range []uint64{11, 12, 13} {
		lat, lon := int32(481_000_000), int32(115_000_000)
		for m := int64(0); m < 4*60; m++ {
			if dev != 11 && m%90 >= 70 {
				continue // 20 minutes of silence every hour and a half
			}
			base := uint64(t0 + m*60_000)
			var msgs []protocol.Message
			for i := range 6 {
				tm := base + uint64(i*7_000+rng.IntN(5_000))
				if rng.IntN(20) == 0 {
					tm -= uint64(5*60_000 + rng.IntN(3*60_000)) // a late message
				}
				crc := rng.Uint32()
				switch rng.IntN(3) {
				case 0:
					lat += int32(rng.IntN(2001) - 1000)
					lon += int32(rng.IntN(2001) - 1000)
					msgs = append(msgs, protocol.Message{Type: protocol.TypeGPS, TimeMs: tm, ContentCRC: crc, LatE7: lat, LonE7: lon, SpeedDkmh: uint16(rng.IntN(1500))})
				case 1:
					msgs = append(msgs, protocol.Message{Type: protocol.TypeEvent, TimeMs: tm, ContentCRC: crc, Code: uint8(1 + rng.IntN(8)), Severity: 1})
				default:
					msgs = append(msgs, protocol.Message{Type: protocol.TypeEngine, TimeMs: tm, ContentCRC: crc, RPM: 900, CoolantRaw: 120})
				}
			}
			// Received 50 s after its base time, give or take 2 s.
			recv := int64(base) + 50_000 + int64(rng.IntN(4_000)) - 2_000
			seq++
			p := &simulator.Package{Seq: seq, Device: dev, Expect: simulator.Expect{Code: 202, Device: dev, Version: 1}}
			for i, msg := range msgs {
				p.Expect.Records = append(p.Expect.Records, simulator.RecordExpect{Index: i, Outcome: simulator.OutcomeValid, Message: msg, HasMessage: true})
			}
			l.ApplyAt(p, 202, 0, simulator.Interval{FromMs: recv - 30, ToMs: recv + 30})
			pkgs = append(pkgs, sent{device: dev, msgs: msgs, received: recv})
		}
	}
	slices.SortStableFunc(pkgs, func(a, b sent) int { return int(a.received - b.received) })
	return pkgs, l.Truth()
}

func partitionOf(id uint64) int32 {
	return topology.Partition([]byte(strconv.FormatUint(id, 10)), parts)
}

// pipeline does with the packages what the pipeline's summaries group and
// silence timer do, with the pipeline's own functions: each package
// handled at its receive time, windows closed by their partition's stream
// time, late readings dropped, timers fired at their due time. It returns
// the summaries emitted on close and the alerts.
func pipeline(pkgs []sent, asOf int64) ([]records.Summary, []records.Alert) {
	type win struct {
		device, start uint64
	}
	open := map[win]*records.SummaryAcc{}
	closed := map[win]bool{}
	stream := map[int32]uint64{}
	var summaries []records.Summary
	var alerts []records.Alert
	states := map[uint64]*records.DeviceState{}
	due := map[uint64]time.Time{}
	fire := func(until int64) {
		for _, id := range []uint64{11, 12, 13} {
			if d, ok := due[id]; ok && !d.IsZero() && d.UnixMilli() <= until {
				a, again := processors.SilenceDue(states[id], states[id].ReceivedMs, d, processors.DefaultSilence)
				if a != nil {
					alerts = append(alerts, *a)
				}
				due[id] = again
			}
		}
	}
	for i, p := range pkgs {
		fire(p.received)
		st := states[p.device]
		if st == nil {
			st = &records.DeviceState{DeviceID: p.device}
			states[p.device] = st
		}
		back, d := processors.NoteReceived(st, p.received, processors.DefaultSilence)
		if back != nil {
			alerts = append(alerts, *back)
		}
		due[p.device] = d
		rs := records.Readings{DeviceID: p.device, RawOffset: int64(i + 1), Part: -1}
		for _, m := range p.msgs {
			rs.Items = append(rs.Items, records.NewReading(p.device, &m))
		}
		part := partitionOf(p.device)
		for _, r := range rs.Items {
			w := win{p.device, processors.SummaryWindow(r.TimeMs)}
			if closed[w] {
				continue // late
			}
			acc := open[w]
			if acc == nil {
				a := processors.InitSummary(p.device, w.start)
				acc = &a
				open[w] = acc
			}
			one := rs
			one.Items = []records.Reading{r}
			one.Part = int64(r.TimeMs) // one identity per reading here
			processors.AddSummary(acc, &one)
			stream[part] = max(stream[part], r.TimeMs)
		}
		for w, acc := range open {
			if partitionOf(w.device) == part && w.start+uint64(hour)+grace <= stream[part] {
				summaries = append(summaries, processors.Summarize(acc))
				closed[w] = true
				delete(open, w)
			}
		}
	}
	fire(asOf)
	return summaries, alerts
}

func storeOf(t *testing.T, summaries []records.Summary) *local.Store {
	store, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.WriteSummaries(context.Background(), summaries); err != nil {
		t.Fatal(err)
	}
	return store
}

func timeOptions(asOf int64) reconcile.TimeOptions {
	return reconcile.TimeOptions{Partitions: parts, Silence: simulator.SilenceOptions{AsOf: time.UnixMilli(asOf)}}
}

// The truth, computed on its own, agrees with what the pipeline's
// functions make of the same packages: every closed window exactly, and
// every silence.
func TestCheckTimeAgrees(t *testing.T) {
	pkgs, truth := timeFixture(t)
	asOf := pkgs[len(pkgs)-1].received + 11*60_000
	summaries, alerts := pipeline(pkgs, asOf)
	rep, err := reconcile.CheckTime(context.Background(), truth, reconcile.TimeSources{Summaries: storeOf(t, summaries), Alerts: alerts}, timeOptions(asOf))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("the truth and the pipeline disagree: %+v", rep)
	}
	// The fixture exercises what it should: closed windows known exactly,
	// silences with returns, and the devices silent at the end.
	if rep.Certain < 6 || rep.Matched != rep.Certain || rep.Stored < rep.Certain || rep.TruthSilent < 4 || rep.TruthBack < 2 || rep.UncertainSilences != 0 {
		t.Fatalf("weak fixture: %+v", rep)
	}
	if rep.Silent != rep.TruthSilent || rep.Back != rep.TruthBack {
		t.Fatalf("counts: %+v", rep)
	}
}

// Every kind of disagreement is found.
func TestCheckTimeFindsDisagreements(t *testing.T) {
	pkgs, truth := timeFixture(t)
	asOf := pkgs[len(pkgs)-1].received + 11*60_000
	summaries, alerts := pipeline(pkgs, asOf)
	for _, c := range []struct {
		name   string
		change func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert)
		want   string
	}{
		{"a window missing", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			return s[1:], a
		}, "not stored"},
		{"a distance off", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			i := slices.IndexFunc(s, func(x records.Summary) bool { return x.DistanceM > 0 })
			s[i].DistanceM *= 1 + 1e-6
			return s, a
		}, "distance"},
		{"a message more", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			s[0].Messages++
			return s, a
		}, "messages"},
		{"harsh events differ", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			s[0].Harsh = map[protocol.EventCode]uint64{protocol.EventHarshBrake: 99}
			return s, a
		}, "harsh"},
		{"a window the truth lacks", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			x := s[0]
			x.WindowStartMs -= 24 * uint64(hour)
			return append(s, x), a
		}, "no message in it"},
		{"a device_silent missing", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			i := slices.IndexFunc(a, func(x records.Alert) bool { return x.Kind == records.AlertSilent })
			return s, slices.Delete(a, i, i+1)
		}, "device_silent"},
		{"a device_back at another time", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			i := slices.IndexFunc(a, func(x records.Alert) bool { return x.Kind == records.AlertBack })
			a[i].TimeMs += 60_000
			return s, a
		}, "device_back"},
		{"an alert twice", func(s []records.Summary, a []records.Alert) ([]records.Summary, []records.Alert) {
			return s, append(a, a[0])
		}, "twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, a := c.change(slices.Clone(summaries), slices.Clone(alerts))
			rep, err := reconcile.CheckTime(context.Background(), truth, reconcile.TimeSources{Summaries: storeOf(t, s), Alerts: a}, timeOptions(asOf))
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || !strings.Contains(strings.Join(rep.Mismatches, "\n"), c.want) {
				t.Fatalf("not found (%q): %+v", c.want, rep)
			}
		})
	}
}

// The view's silence counts are compared with the alerts.
func TestCheckTimeComparesViewCounts(t *testing.T) {
	pkgs, truth := timeFixture(t)
	asOf := pkgs[len(pkgs)-1].received + 11*60_000
	summaries, alerts := pipeline(pkgs, asOf)
	view := fakeView{}
	for _, a := range alerts {
		st := view[a.DeviceID]
		st.DeviceID = a.DeviceID
		if a.Kind == records.AlertSilent {
			st.SilentAlerts++
		} else {
			st.BackAlerts++
		}
		view[a.DeviceID] = st
	}
	src := reconcile.TimeSources{Summaries: storeOf(t, summaries), Alerts: alerts, View: view}
	if rep, err := reconcile.CheckTime(context.Background(), truth, src, timeOptions(asOf)); err != nil || !rep.OK {
		t.Fatalf("%+v, %v", rep, err)
	}
	st := view[12]
	st.BackAlerts++
	view[12] = st
	if rep, _ := reconcile.CheckTime(context.Background(), truth, src, timeOptions(asOf)); rep.OK || !strings.Contains(strings.Join(rep.Mismatches, "\n"), "view counts") {
		t.Fatalf("a view count off not found: %+v", rep)
	}
}

var _ sinks.SummaryStore = (*local.Store)(nil)

// A check that compared no window is not a pass.
func TestCheckTimeWithoutCertainWindowsFails(t *testing.T) {
	var truth simulator.Truth
	rep, err := reconcile.CheckTime(context.Background(), truth, reconcile.TimeSources{Summaries: storeOf(t, nil)}, timeOptions(0))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Certain != 0 || !strings.Contains(strings.Join(rep.Mismatches, "\n"), "no closed window") {
		t.Errorf("an empty check passed: %+v", rep)
	}
	opts := timeOptions(0)
	opts.MayCloseNone = true
	if rep, err := reconcile.CheckSummaries(context.Background(), truth, storeOf(t, nil), opts); err != nil || !rep.OK {
		t.Errorf("with MayCloseNone, a run that closed no window: %+v, %v", rep, err)
	}
}

// CheckSummaries compares the summaries as CheckTime does and leaves the
// alerts out: none given is no mismatch, a summary off still is.
func TestCheckSummariesLeavesAlertsOut(t *testing.T) {
	pkgs, truth := timeFixture(t)
	asOf := pkgs[len(pkgs)-1].received + 11*60_000
	summaries, _ := pipeline(pkgs, asOf)
	rep, err := reconcile.CheckSummaries(context.Background(), truth, storeOf(t, summaries), timeOptions(asOf))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Certain < 6 || rep.Matched != rep.Certain || rep.Silent+rep.TruthSilent+rep.UncertainSilences != 0 {
		t.Fatalf("%+v", rep)
	}
	off := slices.Clone(summaries)
	off[0].Messages++
	rep, err = reconcile.CheckSummaries(context.Background(), truth, storeOf(t, off), timeOptions(asOf))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.MismatchCount != 1 || !strings.Contains(rep.Mismatches[0], "messages") {
		t.Fatalf("a summary off not found alone: %+v", rep)
	}
}
