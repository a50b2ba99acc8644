package windowstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestWriteBufferReadsLikeDirectWrites: the same random puts, deletes,
// expiries, flushes and reopenings applied to a store writing at once and
// to stores buffering writes (a buffer flushed every few writes, and one
// never filled) read the same through Get, Fetch and Ending after every
// step, and the same after a reopening (Close writes the buffer).
func TestWriteBufferReadsLikeDirectWrites(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			keys := []string{"a", "ab", "abc", "b", "k1", "k2"}
			type store struct {
				name string
				dir  string
				opts Options
				s    *Store
			}
			stores := []*store{
				{name: "direct", opts: Options{}},
				{name: "small buffer", opts: Options{WriteBuffer: 600}},
				{name: "large buffer", opts: Options{WriteBuffer: 1 << 30}},
				// A cache that keeps a few windows (turning over all the
				// time), and none.
				{name: "small buffer, small cache", opts: Options{WriteBuffer: 600, CacheBytes: 400}},
				{name: "small buffer, no cache", opts: Options{WriteBuffer: 600, CacheBytes: -1}},
			}
			for _, st := range stores {
				st.opts.SegmentInterval, st.opts.Retention, st.dir = 6*hour, day, t.TempDir()
				st.opts.Dir = st.dir
				var err error
				if st.s, err = Open(st.opts); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				for _, st := range stores {
					_ = st.s.Close()
				}
			})
			streamTime := int64(0)
			for step := range 500 {
				key := []byte(keys[rng.IntN(len(keys))])
				start := int64(rng.IntN(72)) * hour
				op := rng.IntN(100)
				// Every store gets the same draws.
				end := start + int64(1+rng.IntN(5))*hour
				if rng.IntN(10) == 0 {
					end = 1 << 62 // where a done window is indexed
				}
				to := start + int64(rng.IntN(30))*hour
				if rng.IntN(5) == 0 {
					to = 1<<62 + 1
				}
				limit := 1 + rng.IntN(8)
				if op >= 90 && op < 94 {
					streamTime += int64(rng.IntN(8)) * hour
				}
				var what string
				results := make([]string, len(stores))
				for i, st := range stores {
					var got string
					switch {
					case op < 30:
						what = fmt.Sprintf("Put(%s, %d, %d)", key, start/hour, end)
						_, err := st.s.Put(key, start, end, []byte(fmt.Sprint("v", step)))
						got = errKind(err)
					case op < 40:
						what = fmt.Sprintf("PutRecord(%s, %d, %d)", key, start/hour, end)
						rec := ChangeValue(Change{Key: key, Start: start, End: end, Value: []byte(fmt.Sprint("p", step))})
						_, err := st.s.PutRecord(key, start, rec)
						got = errKind(err)
					case op < 50:
						what = fmt.Sprintf("Delete(%s, %d)", key, start/hour)
						_, err := st.s.Delete(key, start)
						got = errKind(err)
					case op < 55:
						c := Change{Key: key, Start: start}
						if op%2 == 0 {
							c.End, c.Value = end, []byte(fmt.Sprint("r", step))
						}
						what = fmt.Sprintf("Restore(%s, %d, %d, %s)", key, start/hour, c.End, c.Value)
						got = errKind(st.s.Restore(c))
					case op < 70:
						what = fmt.Sprintf("Get(%s, %d)", key, start/hour)
						w, ok, err := st.s.Get(key, start)
						got = fmt.Sprintf("%v %d %s %v", ok, w.End, w.Value, err)
					case op < 80:
						what = fmt.Sprintf("Fetch(%s, %d, %d)", key, start/hour, to)
						ws, err := st.s.Fetch(key, start, to)
						got = fmt.Sprint(windows(ws), err)
					case op < 90:
						what = fmt.Sprintf("Ending(%d, %d) up to %d", start/hour, to, limit)
						var ws []Window
						err := st.s.Ending(start, to, func(w Window) bool { ws = append(ws, w); return len(ws) < limit })
						got = fmt.Sprint(windows(ws), err)
					case op < 94:
						what = fmt.Sprintf("Expire(%d)", streamTime/hour)
						_, err := st.s.Expire(streamTime)
						got = fmt.Sprint(err)
					case op < 97:
						what = "Flush"
						if err := st.s.Flush(); err != nil {
							t.Fatal(err)
						}
					default:
						what = "reopen"
						if err := st.s.Close(); err != nil {
							t.Fatal(err)
						}
						var err error
						if st.s, err = Open(st.opts); err != nil {
							t.Fatal(err)
						}
						// Expiry is the caller's to repeat after opening.
						_, err = st.s.Expire(streamTime)
						got = fmt.Sprint(err)
					}
					results[i] = got
				}
				for i := 1; i < len(stores); i++ {
					if results[i] != results[0] {
						t.Fatalf("step %d %s: %s gives %q, %s %q", step, what, stores[i].name, results[i], stores[0].name, results[0])
					}
				}
				// Everything, every few steps.
				if step%25 == 0 {
					var all []string
					for _, st := range stores {
						var ws []Window
						if err := st.s.Ending(0, 1<<62+1, func(w Window) bool { ws = append(ws, w); return true }); err != nil {
							t.Fatal(err)
						}
						all = append(all, fmt.Sprint(windows(ws)))
					}
					for i := 1; i < len(all); i++ {
						if all[i] != all[0] {
							t.Fatalf("step %d: %s holds %s, %s %s", step, stores[i].name, all[i], stores[0].name, all[0])
						}
					}
				}
			}
		})
	}
}

func errKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrExpired):
		return "expired"
	default:
		return err.Error()
	}
}

func windows(ws []Window) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		out = append(out, fmt.Sprintf("%s@%d-%d:%s", w.Key, w.Start, w.End, w.Value))
	}
	return out
}

// openBuffered opens a store with a 1 MiB write buffer in dir, as open
// does; the test closes it.
func openBuffered(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, SegmentInterval: 6 * hour, Retention: day, WriteBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWriteBufferWritesOnClose: buffered writes reach the segments when
// the store closes, and a store opened on the folder holds them.
func TestWriteBufferWritesOnClose(t *testing.T) {
	dir := t.TempDir()
	s := openBuffered(t, dir)
	put(t, s, "k", 0, hour, "a")
	put(t, s, "k", 7*hour, 8*hour, "b")
	put(t, s, "k", 7*hour, 9*hour, "b2")
	if got := s.Segments(); !slices.Equal(got, []int64{0, 6 * hour}) {
		t.Errorf("segments with the writes buffered: %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again := open(t, dir)
	check(t, "reopened", fetch(t, again, "k", 0, day), []string{"0-1:a", "7-9:b2"})
	check(t, "reopened ending", ending(t, again, 0, day), []string{"k@0-1:a", "k@7-9:b2"})
}

// TestWriteBufferFlushFailingPartWay: a flush whose write to one segment
// fails keeps that segment's windows buffered and drops those written, so
// a window written again later replaces the index entry on disk, not the
// one the buffer started from (which would leave an entry without its
// window, and every later Ending failing).
func TestWriteBufferFlushFailingPartWay(t *testing.T) {
	for round := range 20 { // the segments are written in map order
		s := openBuffered(t, t.TempDir())
		put(t, s, "x", 0, hour, "a")
		put(t, s, "y", 7*hour, 8*hour, "b")
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		put(t, s, "x", 0, 2*hour, "a2")
		put(t, s, "y", 7*hour, 9*hour, "b2")
		// Segment 1 (6-12 h) refuses writes: closed under the store.
		if err := s.segments[1].Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err == nil {
			t.Fatal("flush into a closed segment succeeded")
		}
		db, err := openSegment(s.segmentDir(1))
		if err != nil {
			t.Fatal(err)
		}
		s.segments[1] = db
		put(t, s, "x", 0, 3*hour, "a3")
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := ending(t, s, 0, day); !slices.Equal(got, []string{"x@0-3:a3", "y@7-9:b2"}) {
			t.Fatalf("round %d: after a flush that failed part way: %q", round, got)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEndingScansTheBufferOnlyWhenItMust: a scan of the buffer learns its
// true least end (a window moved past every time no longer makes each
// later Ending scan the buffer), and a range holding more buffered windows
// than mergeLimit writes the buffer instead of merging it.
func TestEndingScansTheBufferOnlyWhenItMust(t *testing.T) {
	s, err := Open(Options{Memory: true, SegmentInterval: 6 * hour, Retention: day, WriteBuffer: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "due", 0, hour, "")
	put(t, s, "later", 0, 20*hour, "")
	put(t, s, "due", 0, 1<<62, "fired") // moved past every time
	if got := ending(t, s, 0, 2*hour); len(got) != 0 {
		t.Fatalf("due by 2 h: %q", got)
	}
	if m := s.minEnd.Load(); m != 20*hour {
		t.Errorf("least end after a scan: %d h, want 20", m/hour)
	}
	for i := range mergeLimit + 1 {
		put(t, s, fmt.Sprint("k", i), hour, 2*hour, "")
	}
	if n := len(ending(t, s, 0, 3*hour)); n != mergeLimit+1 {
		t.Fatalf("%d windows due by 3 h, want %d", n, mergeLimit+1)
	}
	if n := len(s.pending); n != 0 {
		t.Errorf("%d windows still buffered after an Ending over more than mergeLimit", n)
	}
}

// TestCacheServesWindowsWrittenAndRead: a window the buffer wrote, or one
// read once (present or absent), is read again, and rewritten, without a
// read of its segment; bytes a caller changes in what Get returned do not
// change the store.
func TestCacheServesWindowsWrittenAndRead(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), SegmentInterval: 6 * hour, Retention: day, WriteBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Put([]byte("a"), 0, hour, []byte("one"))
	must(err)
	_, err = s.Put([]byte("b"), 0, hour, []byte("bee"))
	must(err)
	must(s.Flush())
	reads := s.reads.Load()
	w, ok, err := s.Get([]byte("a"), 0)
	if err != nil || !ok || string(w.Value) != "one" || w.End != hour {
		t.Fatalf("Get after a flush: %+v %v %v", w, ok, err)
	}
	if w, _, _ := s.Get([]byte("b"), 0); string(w.Value) == "bee" {
		w.Value[0] = 'X' // the caller's copy
	} else {
		t.Fatalf("b reads %q", w.Value)
	}
	if _, ok, err := s.Get([]byte("nothing"), 0); ok || err != nil {
		t.Fatalf("absent window read as present: %v", err)
	}
	if got := s.reads.Load() - reads; got != 1 {
		t.Errorf("two flushed windows and an absent one took %d segment reads, want 1 (the absent one)", got)
	}
	reads = s.reads.Load()
	if _, ok, _ := s.Get([]byte("nothing"), 0); ok {
		t.Fatal("absent window read as present")
	}
	_, err = s.Put([]byte("a"), 0, 2*hour, []byte("two")) // its old end from the cache
	must(err)
	must(s.Flush())
	if got := s.reads.Load() - reads; got != 0 {
		t.Errorf("reading an absence again and rewriting a cached window took %d segment reads, want 0", got)
	}
	if w, _, _ := s.Get([]byte("b"), 0); string(w.Value) != "bee" {
		t.Errorf("b reads %q", w.Value)
	}
	must(s.Close())

	// What the segments hold: the index entry moved with the end, and the
	// caller's change to its copy did not reach the store.
	s2, err := Open(Options{Dir: s.opts.Dir, SegmentInterval: 6 * hour, Retention: day, WriteBuffer: 1 << 20})
	must(err)
	defer s2.Close()
	var ends []string
	must(s2.Ending(0, 1<<62, func(w Window) bool {
		ends = append(ends, fmt.Sprintf("%s@%d:%s", w.Key, w.End/hour, w.Value))
		return true
	}))
	if want := []string{"b@1:bee", "a@2:two"}; !slices.Equal(ends, want) {
		t.Errorf("after reopening the store holds %v, want %v", ends, want)
	}
	// A window the segment holds is read from it once, then from the
	// cache.
	reads = s2.reads.Load()
	for range 2 {
		if w, ok, err := s2.Get([]byte("a"), 0); err != nil || !ok || string(w.Value) != "two" {
			t.Fatalf("Get after reopening: %+v %v %v", w, ok, err)
		}
	}
	if got := s2.reads.Load() - reads; got != 1 {
		t.Errorf("a stored window read twice took %d segment reads, want 1", got)
	}
}
