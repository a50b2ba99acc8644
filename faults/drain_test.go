package faults

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/topology"
)

// lagSeries answers the lag reads of WaitDrained from a list of totals (on
// the sink's partition 2), repeating the last one; a negative total is a
// failed read.
func lagSeries(totals ...int64) func(context.Context) ([]topology.PartitionLag, error) {
	i := 0
	return func(context.Context) ([]topology.PartitionLag, error) {
		n := totals[min(i, len(totals)-1)]
		i++
		if n < 0 {
			return nil, errors.New("brokers unreachable")
		}
		return []topology.PartitionLag{
			{Group: "decode", Topic: "raw", Partition: 0, Committed: 10, End: 10},
			{Group: "sink", Topic: "normalized", Partition: 2, Committed: 100 - n, End: 100, Lag: n},
		}, nil
	}
}

var testBounds = DrainBounds{Stall: 40 * time.Millisecond, Max: time.Minute, Interval: 5 * time.Millisecond}

// A pipeline that drains slowly but steadily is waited for, however long it
// takes within Max: a slow machine gives slow results, not lost messages.
func TestWaitDrainedWaitsWhileTheLagFalls(t *testing.T) {
	var totals []int64
	for n := int64(120); n >= 0; n-- {
		totals = append(totals, n, n) // a new low every other read
	}
	// A stall bound well above a read's interval, so that a busy machine's
	// late wake-up is not taken for a stall.
	b := DrainBounds{Stall: 200 * time.Millisecond, Max: time.Minute, Interval: 5 * time.Millisecond}
	d, err := WaitDrained(context.Background(), b, lagSeries(totals...))
	if err != nil {
		t.Fatalf("a steadily falling lag failed the drain: %v", err)
	}
	if !d.Drained() || d.Total != 0 || len(d.Lagging) != 0 || d.Reads != len(totals)-1 {
		t.Errorf("drain %+v: want drained after %d reads", d, len(totals)-1)
	}
	if d.Took < b.Stall {
		t.Errorf("the drain took %v, less than the stall bound %v: the test proves nothing", d.Took, b.Stall)
	}
}

// A lag that stops falling fails the drain with the lag it saw, partition
// by partition.
func TestWaitDrainedFailsWithTheLagWhenItStalls(t *testing.T) {
	d, err := WaitDrained(context.Background(), testBounds, lagSeries(9, 8, 7, 8)) // only a read of 8 can fail: 7 is a new low
	if err == nil {
		t.Fatal("a stalled lag drained")
	}
	if d.Drained() || d.Total != 8 || len(d.Lagging) != 1 {
		t.Errorf("drain %+v: want 8 records of lag on one partition", d)
	}
	for _, want := range []string{"stopped falling", "8 records of lag on 1 partitions", "sink normalized/2 8 (committed 92, end 100)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "decode") {
		t.Errorf("error %q names a partition without lag", err)
	}
}

// Max bounds the wait even while the lag falls; failed reads are retried
// and count as no progress.
func TestWaitDrainedBounds(t *testing.T) {
	var falling []int64
	for n := int64(1 << 20); n > 0; n-- {
		falling = append(falling, n)
	}
	b := testBounds
	b.Max = 60 * time.Millisecond
	if _, err := WaitDrained(context.Background(), b, lagSeries(falling...)); err == nil || !strings.Contains(err.Error(), "not drained within") {
		t.Errorf("past Max: %v, want a failure naming the bound", err)
	}
	d, err := WaitDrained(context.Background(), testBounds, lagSeries(5, -1, -1, 3, 0))
	if err != nil || !d.Drained() || d.Failed != 2 {
		t.Errorf("failed reads then a drain: %+v, %v", d, err)
	}
	d, err = WaitDrained(context.Background(), testBounds, lagSeries(5, -1))
	if err == nil || d.Drained() || !strings.Contains(err.Error(), "brokers unreachable") {
		t.Errorf("reads failing for good: %+v, %v: want a failure with the read's error", d, err)
	}
}
