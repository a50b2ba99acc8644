package topology

import "testing"

// The rebuilt stream time counts the raises of committed records only: a
// replayed record is judged by the stream time of what committed before it.
func TestStreamTimeEntryKeepsCommittedRaises(t *testing.T) {
	var l streamLog
	l.raise("in", 3, 100)
	l.raise("other", 7, 150)
	l.raise("in", 5, 200)
	b := l.encode()
	for _, tc := range []struct {
		name      string
		committed map[string]int64
		want      int64
	}{
		{"all committed", map[string]int64{"in": 6, "other": 8}, 200},
		{"last uncommitted", map[string]int64{"in": 5, "other": 8}, 150},
		{"other uncommitted", map[string]int64{"in": 4, "other": 7}, 100},
		{"nothing committed", map[string]int64{"in": -1, "other": -1}, 0},
	} {
		var got streamLog
		if err := got.restore(b, tc.committed); err != nil {
			t.Fatal(err)
		}
		if !got.restored || got.base != tc.want || got.written != tc.want {
			t.Errorf("%s: restored %+v, want stream time %d", tc.name, got, tc.want)
		}
	}
	var bad streamLog
	if err := bad.restore(b[:len(b)-1], nil); err == nil {
		t.Error("a truncated entry restored")
	}
}

// An entry keeps streamSteps raises: the oldest dropped moves its base.
func TestStreamTimeEntryBounded(t *testing.T) {
	var l streamLog
	for i := range int64(streamSteps + 2) {
		l.raise("in", i, (i+1)*10)
	}
	if len(l.steps) != streamSteps || l.base != 20 {
		t.Errorf("%d steps from base %d, want %d from 20", len(l.steps), l.base, streamSteps)
	}
}
