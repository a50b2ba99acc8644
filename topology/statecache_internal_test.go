package topology

import "testing"

// The runner's StateCacheBytes reaches every window and timer store of a
// partition the callbacks use: by default they cache what they wrote, and
// with a negative bound they cache nothing. The stores a rebuild writes
// (base) never cache: nothing reads them.
func TestStateStoresCacheAsTheRunnerSays(t *testing.T) {
	for _, c := range []struct {
		bytes  int
		folder string
		caches bool
	}{{0, "live", true}, {1 << 20, "live", true}, {-1, "live", false}, {0, "base", false}} {
		p := New("cache").Processor("g")
		td := p.timeState()
		td.addState("agg-windows", stateWindows, "agg", "c", 0).segment = 3_600_000
		td.states[0].retention = 86_400_000
		td.addState("timers", stateTimers, "timers", "framework", 0)
		r := &Runner{opts: RunnerOptions{DataDir: t.TempDir(), StateCacheBytes: c.bytes}}
		ps, err := r.timeRuntime(p).open(0, c.folder, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ps.close)
		if len(ps.stores) != 2 {
			t.Fatalf("%d stores open, want 2", len(ps.stores))
		}
		for st, s := range ps.stores {
			if _, err := s.Put([]byte("device"), 0, 1000, []byte("value")); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if held := s.CacheHeld(); (held > 0) != c.caches {
				t.Errorf("StateCacheBytes %d: the %s store's cache (%s) holds %d bytes", c.bytes, st.topic.name, c.folder, held)
			}
		}
	}
}

// A state record is sized exactly (the store and its cache keep it) and
// reads back as the value it encodes.
func TestStateRecordIsSizedExactly(t *testing.T) {
	long := string(make([]byte, 200)) // a topic name whose length takes two varint bytes
	for _, v := range []stateValue{
		{end: 5, payload: []byte("p")},
		{end: 5, applied: true, appliedTopic: "in", appliedOffset: 9, payload: []byte("pay")},
		{end: 5, done: true, byTopic: long, byOffset: 1 << 40, applied: true, appliedTopic: "t", appliedOffset: 3},
	} {
		rec := stateRecord(doneEnd, v)
		if len(rec) != cap(rec) {
			t.Errorf("%+v: record of %d bytes in %d", v, len(rec), cap(rec))
		}
		got, err := parseState(rec[8:])
		if err != nil || got.end != v.end || got.done != v.done || got.byTopic != v.byTopic || got.appliedOffset != v.appliedOffset || string(got.payload) != string(v.payload) {
			t.Errorf("%+v read back as %+v, %v", v, got, err)
		}
	}
}
