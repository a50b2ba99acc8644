package simulator

import (
	"math"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// accepted returns a package of device id that the edge accepts, holding
// valid messages msgs.
func accepted(seq int, id uint64, msgs ...protocol.Message) *Package {
	p := &Package{Seq: seq, Device: id, Expect: Expect{Code: 202, Device: id, Version: 1}}
	for i, m := range msgs {
		p.Expect.Records = append(p.Expect.Records, RecordExpect{Index: i, Outcome: OutcomeValid, Message: m, HasMessage: true})
	}
	return p
}

func at(ms int64) Interval { return Interval{FromMs: ms, ToMs: ms + 20} }

const minute = int64(60_000)

func TestBetween(t *testing.T) {
	a := time.UnixMilli(1000).Add(300 * time.Microsecond)
	if got := Between(a, a.Add(1500*time.Microsecond)); got != (Interval{1000, 1002}) {
		t.Errorf("Between = %+v, want 1000..1002", got)
	}
	if got := Between(time.UnixMilli(5), time.UnixMilli(5)); got != (Interval{5, 5}) || !got.Contains(5) || got.Contains(6) {
		t.Errorf("Between of one instant = %+v", got)
	}
}

func TestSilences(t *testing.T) {
	l := NewLedger()
	t0 := int64(1_764_000_000_000)
	seq := 0
	send := func(id uint64, received Interval) {
		seq++
		l.ApplyAt(accepted(seq, id), 202, 0, received)
	}
	// Device 1: silent between 1 and 15 minutes (14 minutes), back, then
	// silent for good after 16 minutes.
	for _, m := range []int64{0, 1, 15, 16} {
		send(1, at(t0+m*minute))
	}
	// Device 2: a gap of exactly the threshold: uncertain.
	send(2, at(t0))
	send(2, at(t0+10*minute))
	// Device 3: gaps of 9 minutes, last package too recent to be silent.
	for _, m := range []int64{0, 9, 18, 27} {
		send(3, at(t0+m*minute))
	}
	// Device 4: an attempt of unknown fate.
	seq++
	l.ApplyAt(accepted(seq, 4, eventAt(1, 1, protocol.EventIdling)), 202, 1, at(t0))
	// Device 5: applied without times.
	seq++
	l.Apply(accepted(seq, 5), 202, 0)
	// Device 6: rejected whole by the decoder after a 202: never reaches
	// the normalized stream, so it is never silent.
	seq++
	rej := accepted(seq, 6)
	rej.Expect.Reject = protocol.ReasonBadCompression
	l.ApplyAt(rej, 202, 0, at(t0))

	truth := l.Truth()
	got := truth.Silences(SilenceOptions{AsOf: time.UnixMilli(t0 + 30*minute)})
	d1 := got[1]
	if d1.Uncertain != 0 || len(d1.Silences) != 2 {
		t.Fatalf("device 1: %+v", d1)
	}
	if s := d1.Silences[0]; s.Since != at(t0+minute) || s.Back == nil || *s.Back != at(t0+15*minute) {
		t.Errorf("device 1, first silence %+v", s)
	}
	if s := d1.Silences[1]; s.Since != at(t0+16*minute) || s.Back != nil {
		t.Errorf("device 1, second silence %+v", s)
	}
	if d2 := got[2]; d2.Uncertain != 1 || len(d2.Silences) != 1 || d2.Silences[0].Since != at(t0+10*minute) {
		t.Errorf("device 2: %+v", d2) // the gap uncertain; silent since 10 minutes by 30
	}
	if d3 := got[3]; d3.Uncertain != 0 || len(d3.Silences) != 0 {
		t.Errorf("device 3: %+v", d3)
	}
	if d4 := got[4]; d4.Uncertain == 0 {
		t.Errorf("device 4 (an attempt of unknown fate): %+v", d4)
	}
	if d5 := got[5]; d5.Uncertain == 0 {
		t.Errorf("device 5 (no times): %+v", d5)
	}
	if d6, ok := got[6]; ok {
		t.Errorf("device 6 (no package reached the stream): %+v", d6)
	}
	// As of 36 minutes, device 3 (last package at 27) is silent too, as
	// of 37 minutes minus the slack it is uncertain.
	if d3 := truth.Silences(SilenceOptions{AsOf: time.UnixMilli(t0 + 38*minute)})[3]; len(d3.Silences) != 1 || d3.Uncertain != 0 {
		t.Errorf("device 3 as of 38 minutes: %+v", d3)
	}
	if d3 := truth.Silences(SilenceOptions{AsOf: time.UnixMilli(t0 + 37*minute + 2000)})[3]; len(d3.Silences) != 0 || d3.Uncertain != 1 {
		t.Errorf("device 3 within the slack of its due time: %+v", d3)
	}
}

func gpsAt(ms uint64, crc uint32, latE7, lonE7 int32, dkmh uint16) protocol.Message {
	return protocol.Message{Type: protocol.TypeGPS, TimeMs: ms, ContentCRC: crc, LatE7: latE7, LonE7: lonE7, SpeedDkmh: dkmh}
}

func eventAt(ms uint64, crc uint32, code protocol.EventCode) protocol.Message {
	return protocol.Message{Type: protocol.TypeEvent, TimeMs: ms, ContentCRC: crc, Code: uint8(code), Severity: 2}
}

func TestSummaries(t *testing.T) {
	const w0 = uint64(1_764_000_000_000 - 1_764_000_000_000%SummaryWindowMs)
	const w1 = w0 + SummaryWindowMs
	closeAt := w1 + uint64(10*minute) // the end of w0 plus the grace
	r0 := int64(w0) + 5*minute        // receive times, wall clock
	l := NewLedger()
	// Device 1, window w0: three fixes sent out of order, events, received
	// early; a fourth message received late (after device 2 closed w0).
	l.ApplyAt(accepted(1, 1, gpsAt(w0+3000, 3, 0, 20_000_000, 300), eventAt(w0+100, 9, protocol.EventHarshBrake),
		eventAt(w0+200, 8, protocol.EventIgnitionOn)), 202, 0, at(r0))
	l.ApplyAt(accepted(2, 1, gpsAt(w0+1000, 1, 0, 0, 100), gpsAt(w0+2000, 2, 0, 10_000_000, 200)), 202, 0, at(r0+minute))
	// Device 2 on the same partition: a message at the closing time,
	// received at r0+60 minutes: w0 closes then.
	l.ApplyAt(accepted(3, 2, gpsAt(closeAt, 7, 0, 0, 0)), 202, 0, at(r0+60*minute))
	l.ApplyAt(accepted(4, 1, eventAt(w0+5000, 4, protocol.EventHarshCorner)), 202, 0, at(r0+70*minute))
	// Device 3 on another partition: nothing closes its window.
	l.ApplyAt(accepted(5, 3, gpsAt(w0+10, 5, 0, 0, 0)), 202, 0, at(r0))
	truth := l.Truth()
	part := func(id uint64) int32 { return int32(id / 3) }
	got := truth.Summaries(SummaryOptions{Partition: part})
	if len(got) != 3 {
		t.Fatalf("%d windows: %+v", len(got), got)
	}
	w := got[0]
	deg := EarthRadiusM * math.Pi / 180
	if w.DeviceID != 1 || w.WindowStartMs != w0 || !w.Closed || !w.Certain || w.Late != 1 || w.Summary == nil {
		t.Fatalf("device 1, w0: %+v", w)
	}
	s := *w.Summary
	if s.Messages != 5 || s.GPSFixes != 3 || math.Abs(s.DistanceM-2*deg) > 1e-6 || s.MaxSpeedKmh != 30 || s.AvgSpeedKmh != 20 ||
		s.FirstMs != w0+100 || s.LastMs != w0+3000 || len(s.Harsh) != 1 || s.Harsh[protocol.EventHarshBrake] != 1 {
		t.Errorf("device 1, w0: summary %+v", s)
	}
	if w := got[1]; w.DeviceID != 2 || w.WindowStartMs != w1 || w.Closed {
		t.Errorf("device 2, w1: %+v", w)
	}
	if w := got[2]; w.DeviceID != 3 || w.Closed || !w.Certain {
		t.Errorf("device 3: %+v", w)
	}
	// The late message received within Settle of the closing one: the
	// window is uncertain.
	l.ApplyAt(accepted(6, 1, eventAt(w0+6000, 6, protocol.EventHarshAccel)), 202, 0, at(r0+60*minute+1000))
	truth = l.Truth()
	if w := truth.Summaries(SummaryOptions{Partition: part})[0]; w.Certain || !w.Closed {
		t.Errorf("a message handled about when the window closed: %+v", w)
	}
	// Device 3's window holds a message of a package whose fate is
	// unknown (given up after a timeout): uncertain.
	if w := got[2]; !w.Certain {
		t.Fatalf("device 3 before: %+v", w)
	}
	l.Unsent(accepted(7, 3, eventAt(w0+20, 70, protocol.EventHarshBrake)), 1)
	truth = l.Truth()
	if w := truth.Summaries(SummaryOptions{Partition: part})[2]; w.DeviceID != 3 || w.Certain {
		t.Errorf("a window with a message of unknown fate: %+v", w)
	}
}
