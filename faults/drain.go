package faults

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/watershed-io/watershed/topology"
)

// DrainBounds bound WaitDrained: how long the lag may go without a new
// low, and how long the wait may take in all.
type DrainBounds struct {
	// Stall fails the wait when the total lag has not fallen below its
	// lowest yet for this long (the pipeline stopped draining).
	Stall time.Duration
	// Max fails the wait after this long even while the lag falls.
	Max time.Duration
	// Interval is the time between two reads of the lag.
	Interval time.Duration
}

// DrainBoundsFor returns the bounds of the drain after a run of the given
// duration: a slow machine drains slowly, so the wait lasts as long as the
// lag keeps falling (Stall 5 minutes: longer than a group's restart
// backoff, a rebalance and a Cassandra outage's retries), up to 30 minutes
// or the run's duration, whichever is longer.
func DrainBoundsFor(run time.Duration) DrainBounds {
	return DrainBounds{Stall: 5 * time.Minute, Max: max(30*time.Minute, run), Interval: time.Second}
}

// Drain is what WaitDrained saw.
type Drain struct {
	// Took is the time the wait took.
	Took time.Duration
	// Lagging are the partitions whose lag was above zero at the last read
	// (none when drained), largest lag first; Total is their sum.
	Lagging []topology.PartitionLag
	Total   int64
	// Reads counts the reads of the lag, Failed those that failed.
	Reads, Failed int
	drained       bool
}

// Drained reports whether every lag reached zero.
func (d Drain) Drained() bool { return d.drained }

// String describes the lag seen, partition by partition.
func (d Drain) String() string {
	if d.Drained() {
		return fmt.Sprintf("drained in %v", d.Took.Round(time.Millisecond))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d records of lag on %d partitions after %v:", d.Total, len(d.Lagging), d.Took.Round(time.Second))
	for _, l := range d.Lagging {
		fmt.Fprintf(&b, " %s %s/%d %d (committed %d, end %d);", l.Group, l.Topic, l.Partition, l.Lag, l.Committed, l.End)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// WaitDrained reads the lag of every group (lags) until each partition's
// lag is zero. It fails when the total lag stops falling for b.Stall, after
// b.Max, or when ctx ends, with the lag it saw last. A read that fails is
// retried (the brokers may still be recovering).
func WaitDrained(ctx context.Context, b DrainBounds, lags func(context.Context) ([]topology.PartitionLag, error)) (Drain, error) {
	start := time.Now()
	d := Drain{Lagging: []topology.PartitionLag{}} // a list in the report, also when empty
	lowest, lowAt := int64(-1), start
	var lastErr error
	for {
		ls, err := lags(ctx)
		d.Reads++
		if err != nil {
			d.Failed++
			lastErr = err
		} else {
			lastErr = nil
			d.Lagging, d.Total = d.Lagging[:0], 0
			for _, l := range ls {
				if l.Lag != 0 {
					d.Lagging = append(d.Lagging, l)
					d.Total += l.Lag
				}
			}
			slices.SortFunc(d.Lagging, func(a, b topology.PartitionLag) int { return cmp.Compare(b.Lag, a.Lag) })
			if len(d.Lagging) == 0 {
				d.Took, d.drained = time.Since(start), true
				return d, nil
			}
			if lowest < 0 || d.Total < lowest {
				lowest, lowAt = d.Total, time.Now()
			}
		}
		d.Took = time.Since(start)
		var why string
		switch {
		case d.Took >= b.Max:
			why = fmt.Sprintf("not drained within %v", b.Max)
		case time.Since(lowAt) >= b.Stall:
			why = fmt.Sprintf("the lag stopped falling for %v", b.Stall)
		case ctx.Err() != nil:
			why = ctx.Err().Error()
		}
		if why != "" {
			if lastErr != nil {
				return d, fmt.Errorf("faults: %s: the last read of the lag failed: %w; before: %v", why, lastErr, d)
			}
			return d, fmt.Errorf("faults: %s: %v", why, d)
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.Interval):
		}
	}
}
