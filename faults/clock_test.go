package faults

import (
	"testing"
	"time"
)

// The fault run's message clock: behind the wall clock, continuous,
// closing the first window within the run at CI and at full size, with a
// close band of at least twice Settle.
func TestMessageClock(t *testing.T) {
	start := time.Date(2026, 12, 7, 4, 36, 12, 0, time.UTC)
	for _, c := range []struct {
		d           time.Duration
		closes      bool
		settle      time.Duration
		bandAtLeast time.Duration
	}{
		{150 * time.Second, true, 40 * time.Second, 80 * time.Second},
		{30 * time.Minute, true, 0, 5 * time.Minute},
		{60 * time.Second, false, 40 * time.Second, 80 * time.Second},
	} {
		mc := NewMessageClock(start, c.d)
		if got := mc.At(0); !got.Equal(mc.From) || got.Minute() != 45 || start.Sub(got) < 2*time.Hour {
			t.Errorf("%v: starts at %v, want a quarter before the hour, over two hours before %v", c.d, got, start)
		}
		if !mc.Hour.Equal(mc.From.Add(clockLead)) || mc.Hour.Minute() != 0 {
			t.Errorf("%v: hour %v", c.d, mc.Hour)
		}
		if end := mc.At(c.d + time.Minute); end.After(start.Add(-time.Hour)) {
			t.Errorf("%v: message time %v less than an hour behind the wall clock %v", c.d, end, start)
		}
		if got := mc.Closes(c.d); got != c.closes {
			t.Errorf("%v: closes %v, want %v (message time at the end %v, hour %v)", c.d, got, c.closes, mc.At(c.d), mc.Hour)
		}
		if c.settle > 0 && (mc.Settle() < c.settle || mc.Settle() > c.settle+5*time.Second) {
			t.Errorf("%v: settle %v, want %v or a little more", c.d, mc.Settle(), c.settle)
		}
		// The band of message time before a close lasts at least twice
		// Settle of wall time, wherever the close falls.
		closeAt := mc.Hour.Add(surelyClosed)
		if band := mc.Elapsed(closeAt) - mc.Elapsed(closeAt.Add(-closeBand)); band < c.bandAtLeast || band < 2*mc.Settle() {
			t.Errorf("%v: close band %v of wall time, settle %v", c.d, band, mc.Settle())
		}
		for _, e := range []time.Duration{0, mc.Knee / 2, mc.Knee, mc.Knee + 7*time.Second, c.d} {
			if back := mc.Elapsed(mc.At(e)); (back - e).Abs() > time.Microsecond {
				t.Errorf("%v: Elapsed(At(%v)) = %v", c.d, e, back)
			}
		}
		if a, b := mc.At(mc.Knee-time.Millisecond), mc.At(mc.Knee+time.Millisecond); b.Before(a) || b.Sub(a) > time.Second {
			t.Errorf("%v: not continuous at the knee: %v, %v", c.d, a, b)
		}
	}
}
