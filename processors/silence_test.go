package processors

import (
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
)

// A device's silences, step by step: what the record callback
// (NoteReceived) and the timer (SilenceDue) decide, and what the state
// counts.
func TestSilenceDecisions(t *testing.T) {
	const th = DefaultSilence
	t0 := time.UnixMilli(1_764_000_000_000)
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	st := records.DeviceState{DeviceID: 5}
	type step struct {
		name     string
		received time.Duration // a package received then (when fire is false)
		fire     bool          // the timer fires at now instead
		now      time.Duration
		alert    *records.Alert
		due      time.Time // the due time returned (NoteReceived) or the rescheduled one (SilenceDue)
		silent   bool
		counts   [2]uint64 // silent, back
	}
	for _, s := range []step{
		{name: "a timer of a device never heard of does nothing", fire: true, now: 0},
		{name: "first package", received: 0, due: at(th)},
		{name: "a timer fired early is moved to the due time", fire: true, now: 5 * time.Minute, due: at(th)},
		{name: "a package moves the due time", received: 2 * time.Minute, due: at(2*time.Minute + th)},
		{name: "the old timer fires, armed for the newest package: moved", fire: true, now: th, due: at(2*time.Minute + th)},
		{name: "due: device_silent", fire: true, now: 2*time.Minute + th + time.Second,
			alert:  &records.Alert{DeviceID: 5, Kind: records.AlertSilent, TimeMs: uint64(ms(2*time.Minute + th)), SinceMs: uint64(ms(2 * time.Minute))},
			silent: true, counts: [2]uint64{1, 0}},
		{name: "the timer fires again (a crash before its commit): the same alert, counted once", fire: true, now: 30 * time.Minute,
			alert:  &records.Alert{DeviceID: 5, Kind: records.AlertSilent, TimeMs: uint64(ms(2*time.Minute + th)), SinceMs: uint64(ms(2 * time.Minute))},
			silent: true, counts: [2]uint64{1, 0}},
		{name: "the device sends again: device_back", received: 40 * time.Minute, due: at(40*time.Minute + th),
			alert:  &records.Alert{DeviceID: 5, Kind: records.AlertBack, TimeMs: uint64(ms(40 * time.Minute)), SinceMs: uint64(ms(2 * time.Minute))},
			counts: [2]uint64{1, 1}},
		{name: "an older package handled late does not move the due time back", received: 39 * time.Minute, due: at(40*time.Minute + th), counts: [2]uint64{1, 1}},
		{name: "silent again", fire: true, now: 40*time.Minute + th,
			alert:  &records.Alert{DeviceID: 5, Kind: records.AlertSilent, TimeMs: uint64(ms(40*time.Minute + th)), SinceMs: uint64(ms(40 * time.Minute))},
			silent: true, counts: [2]uint64{2, 1}},
	} {
		var alert *records.Alert
		var due time.Time
		if s.fire {
			alert, due = SilenceDue(&st, st.ReceivedMs, at(s.now), th)
		} else {
			alert, due = NoteReceived(&st, ms(s.received), th)
		}
		switch {
		case (alert == nil) != (s.alert == nil) || alert != nil && *alert != *s.alert:
			t.Fatalf("%s: alert %+v, want %+v", s.name, alert, s.alert)
		case !due.Equal(s.due):
			t.Fatalf("%s: due %v, want %v", s.name, due, s.due)
		case st.Silent != s.silent || st.SilentAlerts != s.counts[0] || st.BackAlerts != s.counts[1]:
			t.Fatalf("%s: state silent %v, alerts %d silent %d back; want %v, %v", s.name, st.Silent, st.SilentAlerts, st.BackAlerts, s.silent, s.counts)
		}
	}
}

// The decisions live in the state: a state written and read back (the
// device-state table) decides the same.
func TestSilenceStateSurvivesTheTable(t *testing.T) {
	st := records.DeviceState{DeviceID: 5}
	NoteReceived(&st, 1_000_000, time.Minute)
	if a, _ := SilenceDue(&st, 1_000_000, time.UnixMilli(1_060_000), time.Minute); a == nil {
		t.Fatal("no device_silent at the due time")
	}
	b, err := records.DeviceStateCodec{}.Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	back, err := records.DeviceStateCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := SilenceDue(&back, 1_000_000, time.UnixMilli(2_000_000), time.Minute); a == nil || a.TimeMs != 1_060_000 || back.SilentAlerts != 1 {
		t.Errorf("a replayed firing after the table: %+v, state %+v; want the same device_silent, counted once", a, back)
	}
	if a, _ := NoteReceived(&back, 2_000_000, time.Minute); a == nil || a.Kind != records.AlertBack || back.BackAlerts != 1 {
		t.Errorf("device_back after the table: %+v, state %+v", a, back)
	}
}

// A timer armed for an older package than the state's newest (a package
// came after the timer was armed, and its record armed it again) raises
// nothing, however late it fires.
func TestSilenceTimerOfAnOlderPackage(t *testing.T) {
	st := records.DeviceState{DeviceID: 5}
	NoteReceived(&st, 1_000_000, time.Minute)
	NoteReceived(&st, 1_030_000, time.Minute)
	if a, due := SilenceDue(&st, 1_000_000, time.UnixMilli(1_070_000), time.Minute); a != nil || !due.IsZero() || st.Silent {
		t.Fatalf("the first package's timer: %+v, %v, state %+v", a, due, st)
	}
	if a, _ := SilenceDue(&st, 1_030_000, time.UnixMilli(1_090_000), time.Minute); a == nil || a.SinceMs != 1_030_000 || a.TimeMs != 1_090_000 {
		t.Fatalf("the newest package's timer: %+v", a)
	}
}
