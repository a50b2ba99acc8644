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
