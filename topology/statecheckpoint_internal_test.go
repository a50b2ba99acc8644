package topology

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A checkpoint is used once (taken: removed), and only when it is well
// formed and younger than checkpointMaxAge: older, the compaction may have
// removed a tombstone of the tail that the base store still holds.
func TestCheckpointIsTakenOnceAndOnlyWhenYoung(t *testing.T) {
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
	old := time.Now().Add(-checkpointMaxAge - time.Minute).UnixMilli()
	for _, text := range []string{fmt.Sprintf("42 7 %d\n", old), "42 7\n", "x 7 1\n"} {
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
