package faults

import (
	"time"

	"github.com/watershed-io/watershed/processors"
)

// MessageClock is the clock the simulated devices' clocks follow in a
// fault run, so that the run's message time closes an hourly window of the
// summaries group and the summaries can be compared with the truth. It
// starts a quarter of an hour before a whole hour (Hour) that lies over
// two hours before the run, so that message time stays behind the edge's
// clock (a message ahead of its receipt is invalid), and runs faster than
// the wall clock.
//
// Why its shape: a device's clock steps 20-400 ms a message and, when it
// falls 15 minutes behind this clock, jumps to 14-15 minutes behind it
// (the simulator's catch-up). The window ending at Hour then closes when
// the newest device clock of a partition passes Hour plus the grace, and
// its last readings on time were sent up to about 9 minutes of message
// time before (the lags' spread and a package's span taken off the
// 10-minute grace). The truth can call a window exactly only when each of
// its readings was received more than the pipeline's handling delay
// (Settle) before any reading that may close it: at the speed of the
// closing, those 9 minutes must last well over Settle of wall time. A
// short run (CI size) therefore runs fast (Fast) until 14.5 minutes after
// Hour, then slower (Slow), which makes the 9 minutes 83 s of wall time,
// twice Settle; a long run runs at one speed near the wall clock's, those
// 9 minutes lasting several minutes.
type MessageClock struct {
	// Start is the run's start by the wall clock, From the message time
	// then.
	Start, From time.Time
	// Hour is the end of the window the run closes first.
	Hour time.Time
	// Knee is how long after Start the speed changes from Fast to Slow.
	Knee time.Duration
	// Fast and Slow are the speeds, message time per wall-clock time.
	Fast, Slow float64
}

const (
	// clockLead is how long before Hour message time starts.
	clockLead = 15 * time.Minute
	// closeBand is the message time between a window's last readings on
	// time and the first that closes it (see MessageClock).
	closeBand = 9 * time.Minute
	// surelyClosed is how long after Hour message time has surely closed
	// the window ending at Hour: the grace, the devices' lag behind this
	// clock (at most 15 minutes) and a package's span, rounded up.
	surelyClosed = processors.SummaryGrace + 16*time.Minute
	// shortRun is the longest run given the two-speed clock.
	shortRun = 20 * time.Minute
	// The two-speed clock's speeds and the message time of its knee.
	shortFast, shortSlow = 50.0, 6.5
	shortKnee            = 14*time.Minute + 30*time.Second
)

// NewMessageClock returns the message clock of a run of duration d
// starting at start.
func NewMessageClock(start time.Time, d time.Duration) MessageClock {
	hour := start.Truncate(time.Hour).Add(-2 * time.Hour)
	c := MessageClock{Start: start, From: hour.Add(-clockLead), Hour: hour}
	if d < shortRun {
		c.Fast, c.Slow = shortFast, shortSlow
		c.Knee = time.Duration(float64(clockLead+shortKnee) / c.Fast)
		return c
	}
	// One speed that surely closes the window by 90 % of the run.
	c.Fast = float64(clockLead+surelyClosed) / (0.9 * float64(d))
	c.Slow = c.Fast
	return c
}

// At returns the message time elapsed after Start.
func (c MessageClock) At(elapsed time.Duration) time.Time {
	if elapsed <= c.Knee {
		return c.From.Add(time.Duration(float64(elapsed) * c.Fast))
	}
	return c.From.Add(time.Duration(float64(c.Knee)*c.Fast + float64(elapsed-c.Knee)*c.Slow))
}

// Now returns the message time now.
func (c MessageClock) Now() time.Time { return c.At(time.Since(c.Start)) }

// Elapsed returns how long after Start the clock showed msg (negative
// before Start).
func (c MessageClock) Elapsed(msg time.Time) time.Duration {
	knee := c.At(c.Knee)
	if !msg.After(knee) {
		return time.Duration(float64(msg.Sub(c.From)) / c.Fast)
	}
	return c.Knee + time.Duration(float64(msg.Sub(knee))/c.Slow)
}

// Settle is the truth's bound on the pipeline's handling delay
// (simulator.SummaryOptions.Settle) for this clock: half the wall time the
// close band lasts at the closing speed (41.5 s at CI size). A reading
// held up for longer than that relative to a later one of its partition
// would make the truth wrong. The faults hold partitions up unevenly for
// less: a replica's SIGKILL stops its group's partitions until they are
// taken over (about 16 s, but the survivors stop too at the rebalance, a
// few seconds after the kill), and a blackholed broker keeps the requests
// to it until the clients' 30 s read time-out. A reading closer than that
// to a window's close makes the window uncertain instead, compared only
// for what it surely holds.
func (c MessageClock) Settle() time.Duration {
	return time.Duration(float64(closeBand) / c.Slow / 2)
}

// Closes reports whether message time by d after Start surely closed the
// window ending at Hour (d is the run's duration).
func (c MessageClock) Closes(d time.Duration) bool {
	return !c.At(d).Before(c.Hour.Add(surelyClosed))
}
