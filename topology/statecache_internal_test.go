package topology

import "testing"

// The runner's StateCacheBytes reaches every window and timer store of a
// partition: by default they cache what they wrote, and with a negative
// bound they cache nothing.
func TestStateStoresCacheAsTheRunnerSays(t *testing.T) {
	for _, c := range []struct {
		bytes  int
		caches bool
	}{{0, true}, {1 << 20, true}, {-1, false}} {
		td := New("cache").Processor("g").timeState()
		td.addState("agg-windows", stateWindows, "agg", "c", 0).segment = 3_600_000
		td.states[0].retention = 86_400_000
		td.addState("timers", stateTimers, "timers", "framework", 0)
		rt := td.newRuntime(t.TempDir(), nil, nil, nil).withCacheBytes(c.bytes)
		ps, err := rt.open(0, "live", nil)
		if err != nil {
			t.Fatal(err)
		}
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
				t.Errorf("StateCacheBytes %d: the %s store's cache holds %d bytes", c.bytes, st.topic.name, held)
			}
		}
		ps.close()
	}
}
