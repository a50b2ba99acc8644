package topology

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A checkpoint is used once (taken: removed), and only when it is well
// formed.
func TestCheckpointIsTakenOnce(t *testing.T) {
	td := New("ck").Processor("g").timeState()
	st := td.addState("timers", stateTimers, "timers", "framework", 0)
	rt := td.newRuntime(t.TempDir(), nil, nil, nil)
	if err := os.MkdirAll(rt.partDir(st, 3), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rt.putCheckpoint(st, 3, checkpoint{offset: 42, maxStart: 7}); err != nil {
		t.Fatal(err)
	}
	if ck, ok, err := rt.takeCheckpoint(st, 3); err != nil || !ok || ck.offset != 42 || ck.maxStart != 7 {
		t.Fatalf("fresh checkpoint: %+v %v %v", ck, ok, err)
	}
	if _, ok, err := rt.takeCheckpoint(st, 3); err != nil || ok {
		t.Fatalf("a checkpoint taken twice: %v %v", ok, err)
	}
	path := filepath.Join(rt.partDir(st, 3), "checkpoint")
	for _, text := range []string{"42 7\n", "x 7 1 0\n", "42 7 1 0 9\n"} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := rt.takeCheckpoint(st, 3); err != nil || ok {
			t.Errorf("checkpoint %q used: %v %v", text, ok, err)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("checkpoint %q not removed", text)
		}
	}
}

// A checkpoint is read on from only while it is younger than the
// changelog keeps tombstones, less the rebuild's time limit and the
// clocks' skew: older, compaction may have removed a tombstone of the
// tail that the base store still holds.
func TestCheckpointUsableWhileTombstonesAreKept(t *testing.T) {
	const restore = 5 * time.Minute
	for _, c := range []struct {
		age, keep time.Duration
		want      bool
	}{
		{0, StateTombstoneRetention, true},
		{23 * time.Hour, StateTombstoneRetention, true},
		{StateTombstoneRetention - restore - checkpointSkew - time.Second, StateTombstoneRetention, true},
		{StateTombstoneRetention - restore - checkpointSkew, StateTombstoneRetention, false},
		{25 * time.Hour, StateTombstoneRetention, false},
		{13 * time.Hour, 12 * time.Hour, false},
		{time.Hour, 12 * time.Hour, true},
		{time.Minute, 5 * time.Minute, false}, // the rebuild may outlast the tombstones
		{0, 0, false},                         // not known
		{-2 * time.Minute, StateTombstoneRetention, false},
	} {
		if got := checkpointUsable(c.age, c.keep, restore); got != c.want {
			t.Errorf("checkpoint %v old, tombstones kept %v: usable %v, want %v", c.age, c.keep, got, c.want)
		}
	}
}
