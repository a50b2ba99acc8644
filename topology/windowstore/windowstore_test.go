package windowstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

const (
	hour = int64(60 * 60 * 1000)
	day  = 24 * hour
)

// open opens a store in dir with hour windows in 6-hour segments kept a
// day, closed when the test ends.
func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, SegmentInterval: 6 * hour, Retention: day})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func put(t testing.TB, s *Store, key string, start, end int64, value string) Change {
	t.Helper()
	c, err := s.Put([]byte(key), start, end, []byte(value))
	if err != nil {
		t.Fatalf("Put(%s, %d): %v", key, start, err)
	}
	return c
}

func fetch(t testing.TB, s *Store, key string, from, to int64) []string {
	t.Helper()
	ws, err := s.Fetch([]byte(key), from, to)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range ws {
		if string(w.Key) != key {
			t.Errorf("Fetch(%s) returned key %q", key, w.Key)
		}
		out = append(out, fmt.Sprintf("%d-%d:%s", w.Start/hour, w.End/hour, w.Value))
	}
	return out
}

func ending(t testing.TB, s *Store, from, to int64) []string {
	t.Helper()
	var out []string
	err := s.Ending(from, to, func(w Window) bool {
		out = append(out, fmt.Sprintf("%s@%d-%d:%s", w.Key, w.Start/hour, w.End/hour, w.Value))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func check(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestFetchByRange: a key's windows by start, across segments, apart from
// other keys, even one that is a prefix of it.
func TestFetchByRange(t *testing.T) {
	s := open(t, t.TempDir())
	for h := int64(0); h < 14; h++ { // segments 0-5 h, 6-11 h, 12-17 h
		put(t, s, "ab", h*hour, (h+1)*hour, fmt.Sprint(h))
		put(t, s, "a", h*hour, (h+1)*hour, "other")
		put(t, s, "abc", h*hour, (h+1)*hour, "other")
	}
	check(t, "all", fetch(t, s, "ab", 0, 100*hour)[:3], []string{"0-1:0", "1-2:1", "2-3:2"})
	if n := len(fetch(t, s, "ab", 0, 100*hour)); n != 14 {
		t.Errorf("%d windows, want 14", n)
	}
	check(t, "across segments", fetch(t, s, "ab", 5*hour, 7*hour), []string{"5-6:5", "6-7:6"})
	check(t, "start inclusive, end exclusive", fetch(t, s, "ab", 12*hour, 13*hour), []string{"12-13:12"})
	check(t, "inside a window", fetch(t, s, "ab", 12*hour+1, 13*hour+1), []string{"13-14:13"})
	check(t, "empty range", fetch(t, s, "ab", 3*hour, 3*hour), nil)
	check(t, "unknown key", fetch(t, s, "b", 0, 100*hour), nil)
	if got := s.Segments(); !reflect.DeepEqual(got, []int64{0, 6 * hour, 12 * hour}) {
		t.Errorf("segments %v", got)
	}
}

// TestPutReplacesOneWindow: a put replaces its window only; a moved end
// moves the window in Ending; a delete removes both.
func TestPutReplacesOneWindow(t *testing.T) {
	s := open(t, t.TempDir())
	put(t, s, "k", 0, hour, "a")
	put(t, s, "k", hour, 2*hour, "b")
	put(t, s, "k", hour, 2*hour, "b2")
	check(t, "replaced", fetch(t, s, "k", 0, day), []string{"0-1:a", "1-2:b2"})
	// A session window grows: its end moves from 2 h to 4 h.
	put(t, s, "k", hour, 4*hour, "b3")
	check(t, "ending before 3 h", ending(t, s, 0, 3*hour), []string{"k@0-1:a"})
	check(t, "ending before 5 h", ending(t, s, 0, 5*hour), []string{"k@0-1:a", "k@1-4:b3"})
	c, err := s.Delete([]byte("k"), 0)
	if err != nil || c.Value != nil || string(c.Key) != "k" || c.Start != 0 {
		t.Fatalf("Delete = %+v, %v", c, err)
	}
	check(t, "deleted", fetch(t, s, "k", 0, day), []string{"1-4:b3"})
	check(t, "deleted from the index", ending(t, s, 0, day), []string{"k@1-4:b3"})
	if _, err := s.Delete([]byte("nothing"), 5*hour); err != nil {
		t.Errorf("delete of a missing window: %v", err)
	}
	if _, err := s.Put([]byte("k"), 5, 4, nil); !errors.Is(err, ErrTime) {
		t.Errorf("end before start: %v", err)
	}
	if _, err := s.Put([]byte("k"), -5, 4, nil); !errors.Is(err, ErrTime) {
		t.Errorf("negative start: %v", err)
	}
}

// TestEndingReadsOnlyWhatItReturns: with many windows closed already,
// closing the due ones reads their index entries and no others, in end
// order across segments, and stops when fn says so.
func TestEndingReadsOnlyWhatItReturns(t *testing.T) {
	s := open(t, t.TempDir())
	for h := int64(0); h < 20; h++ {
		for k := 0; k < 50; k++ {
			put(t, s, fmt.Sprintf("dev-%02d", k), h*hour, (h+1)*hour, "")
		}
	}
	// Sessions of other lengths, in earlier segments, due in the same hour.
	put(t, s, "long", 2*hour, 19*hour+30*60*1000, "x")
	before := s.scanned.Load()
	got := ending(t, s, 19*hour, 20*hour)
	if len(got) != 51 || got[0] != "dev-00@18-19:" || got[1] != "dev-01@18-19:" || got[50] != "long@2-19:x" {
		t.Fatalf("due windows: %d, first %q, last %q", len(got), got[0], got[len(got)-1])
	}
	if n := s.scanned.Load() - before; n != 51 {
		t.Errorf("read %d index entries for 51 due windows", n)
	}
	n := 0
	if err := s.Ending(0, day, func(Window) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Errorf("stopping after 3: %d, %v", n, err)
	}
}

// TestExpireDropsWholeSegments: Expire removes the directories of the
// segments past retention, Fetch and Ending no longer see them, and puts
// there are refused; the others stay.
func TestExpireDropsWholeSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for h := int64(0); h < 48; h++ {
		put(t, s, "k", h*hour, (h+1)*hour, fmt.Sprint(h))
	}
	if got := len(s.Segments()); got != 8 {
		t.Fatalf("%d segments, want 8", got)
	}
	// Stream time 42 h with a day of retention: starts before 18 h may go,
	// so segments 0, 6 h and 12 h (starts up to 17 h) do.
	n, err := s.Expire(42 * hour)
	if err != nil || n != 3 {
		t.Fatalf("Expire = %d, %v; want 3", n, err)
	}
	if got := s.Segments(); !reflect.DeepEqual(got, []int64{18 * hour, 24 * hour, 30 * hour, 36 * hour, 42 * hour}) {
		t.Errorf("segments %v", got)
	}
	for _, seg := range []string{"seg-0", "seg-21600000", "seg-43200000"} {
		if _, err := os.Stat(filepath.Join(dir, seg)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still on disk: %v", seg, err)
		}
	}
	if got := fetch(t, s, "k", 0, 19*hour); !slices.Equal(got, []string{"18-19:18"}) {
		t.Errorf("fetch after expiry = %q", got)
	}
	if got := ending(t, s, 0, 19*hour); len(got) != 0 {
		t.Errorf("ending after expiry = %q", got)
	}
	if _, err := s.Put([]byte("k"), 17*hour, 18*hour, nil); !errors.Is(err, ErrExpired) {
		t.Errorf("put into an expired segment: %v", err)
	}
	put(t, s, "k", 18*hour, 19*hour, "late but kept")
	if n, err := s.Expire(42 * hour); err != nil || n != 0 {
		t.Errorf("second Expire = %d, %v", n, err)
	}
}

// TestRestoreFromChangelog: the changes of puts, updates and deletes,
// encoded as changelog records and compacted (newest per key) or not,
// rebuild an equal store, and applying them twice changes nothing.
func TestRestoreFromChangelog(t *testing.T) {
	src := open(t, t.TempDir())
	var log [][2][]byte
	record := func(c Change) { log = append(log, [2][]byte{ChangeKey(c), ChangeValue(c)}) }
	for h := int64(0); h < 10; h++ {
		record(put(t, src, "a", h*hour, (h+1)*hour, fmt.Sprint("v", h)))
		record(put(t, src, "b", h*hour, (h+2)*hour, ""))
	}
	record(put(t, src, "a", 3*hour, 7*hour, "moved"))
	for _, h := range []int64{1, 8} {
		c, err := src.Delete([]byte("a"), h*hour)
		if err != nil {
			t.Fatal(err)
		}
		if ChangeValue(c) != nil {
			t.Fatal("a deletion's changelog value is not a tombstone")
		}
		record(c)
	}
	compacted := map[string][]byte{}
	var order []string
	for _, r := range log {
		if _, seen := compacted[string(r[0])]; !seen {
			order = append(order, string(r[0]))
		}
		compacted[string(r[0])] = r[1]
	}
	for name, records := range map[string][][2][]byte{"full": log, "compacted": nil} {
		if name == "compacted" {
			for _, k := range order {
				records = append(records, [2][]byte{[]byte(k), compacted[k]})
			}
		}
		dst := open(t, t.TempDir())
		for range 2 {
			for _, r := range records {
				c, err := ParseChange(r[0], r[1])
				if err != nil {
					t.Fatal(err)
				}
				if err := dst.Restore(c); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, k := range []string{"a", "b"} {
			check(t, name+" "+k, fetch(t, dst, k, 0, day), fetch(t, src, k, 0, day))
		}
		check(t, name+" ending", ending(t, dst, 0, day), ending(t, src, 0, day))
	}
	if _, err := ParseChange([]byte{5, 'a'}, nil); err == nil {
		t.Error("short changelog key parsed")
	}
	if _, err := ParseChange(ChangeKey(Change{Key: []byte("a")}), []byte{1}); err == nil {
		t.Error("short changelog value parsed")
	}
}

// TestReopen: a closed store opens again with its segments and windows.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SegmentInterval: 6 * hour, Retention: day})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "k", 0, hour, "a")
	put(t, s, "k", 7*hour, 8*hour, "b")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch([]byte("k"), 0, day); !errors.Is(err, ErrClosed) {
		t.Errorf("fetch after close: %v", err)
	}
	again := open(t, dir)
	check(t, "reopened", fetch(t, again, "k", 0, day), []string{"0-1:a", "7-8:b"})
	check(t, "reopened ending", ending(t, again, 0, day), []string{"k@0-1:a", "k@7-8:b"})
	if _, err := Open(Options{Dir: dir, SegmentInterval: 5 * hour, Retention: day}); err == nil {
		t.Error("opened with another segment interval")
	}
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Error("opened without an interval")
	}
}
