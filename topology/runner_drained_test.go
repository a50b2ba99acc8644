package topology

import "testing"

// TestDrained: no lag is drained; any lag names its group and partition.
func TestDrained(t *testing.T) {
	if err := Drained(nil); err != nil {
		t.Fatalf("no lags: %v", err)
	}
	lags := []PartitionLag{{Group: "g", Topic: "a", Partition: 0}, {Group: "g-retry", Topic: "g-retry-1", Partition: 2, Lag: 10}}
	err := Drained(lags)
	if err == nil || err.Error() != "group g-retry lags 10 on g-retry-1/2" {
		t.Fatalf("Drained = %v", err)
	}
}
