package processors

import (
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
)

// The silence decision's state write is acknowledged, its alert's
// emit is not: the replayed firing must raise the same alert again.
func TestSilenceReplayRaisesAgain(t *testing.T) {
	st := records.DeviceState{DeviceID: 7, ReceivedMs: 1_000}
	now := time.UnixMilli(1_000).Add(DefaultSilence)
	first, _ := SilenceDue(&st, 1_000, now, DefaultSilence)
	again, _ := SilenceDue(&st, 1_000, now, DefaultSilence) // replay on the acknowledged state
	if first == nil || again == nil || *first != *again {
		t.Errorf("first %+v, replay %+v: want the same alert twice", first, again)
	}
}

// The records that raised a device's latest device_silent (a fired timer's
// loop record) and device_back (a package) raise the same alerts again
// when replayed, even after the state moved on; other records do not.
func TestAlertsAgainForTheirOwnRecords(t *testing.T) {
	loop := records.InputOffset{Source: records.InputSource("device-state-loop", 0), Offset: 4}
	pkg := records.InputOffset{Source: records.InputSource("telemetry.normalized", 0), Offset: 9}
	st := records.DeviceState{DeviceID: 7, ReceivedMs: 1_000}
	silent, _ := SilenceDue(&st, 1_000, time.UnixMilli(1_000).Add(DefaultSilence), DefaultSilence)
	st.Silenced, st.SilentSinceMs, st.SilentAtMs = loop, int64(silent.SinceMs), int64(silent.TimeMs)
	back, _ := NoteReceived(&st, 900_000, DefaultSilence)
	st.Back, st.BackSinceMs = pkg, int64(back.SinceMs)
	NoteReceived(&st, 950_000, DefaultSilence) // the device goes on

	if a := SilentAgain(&st, loop); a == nil || *a != *silent {
		t.Errorf("replayed firing: %+v, want %+v", a, silent)
	}
	if a := BackAgain(&st, pkg, 900_000); a == nil || *a != *back {
		t.Errorf("replayed package: %+v, want %+v", a, back)
	}
	other := pkg
	other.Offset++
	if SilentAgain(&st, other) != nil || BackAgain(&st, other, 950_000) != nil || SilentAgain(&st, pkg) != nil || BackAgain(&st, loop, 900_000) != nil {
		t.Error("another record raised an alert again")
	}
	if SilentAgain(&records.DeviceState{}, records.InputOffset{}) != nil || BackAgain(&records.DeviceState{}, records.InputOffset{}, 0) != nil {
		t.Error("a state that raised nothing raised an alert again")
	}
}
