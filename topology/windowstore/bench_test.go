package windowstore

import (
	"strconv"
	"testing"
)

// benchStore is a store with keys devices, each with a window per hour for
// hours hours.
func benchStore(b *testing.B, devices, hours int) (*Store, [][]byte) {
	b.Helper()
	s := open(b, b.TempDir())
	keys := make([][]byte, devices)
	value := make([]byte, 96) // about a summary's size
	for d := range keys {
		keys[d] = []byte("device-" + strconv.Itoa(d))
		for h := 0; h < hours; h++ {
			if _, err := s.Put(keys[d], int64(h)*hour, int64(h+1)*hour, value); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s, keys
}

// BenchmarkPutUpdate is the per-record cost of an aggregate: one record
// updates its key's current window (read the old end, write window and
// index in one batch), 1,000 keys with a day of windows each.
func BenchmarkPutUpdate(b *testing.B) {
	s, keys := benchStore(b, 1000, 24)
	value := make([]byte, 96)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Put(keys[i%len(keys)], 23*hour, 24*hour, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutNew is the cost of a record opening a new window.
func BenchmarkPutNew(b *testing.B) {
	s, keys := benchStore(b, 1000, 0)
	value := make([]byte, 96)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h := int64(i / len(keys))
		if _, err := s.Put(keys[i%len(keys)], h*hour, (h+1)*hour, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFetchDay fetches one key's day of windows (24, over 5
// segments), as the view's summaries endpoint does.
func BenchmarkFetchDay(b *testing.B) {
	s, keys := benchStore(b, 1000, 24)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ws, err := s.Fetch(keys[i%len(keys)], 0, 24*hour)
		if err != nil || len(ws) != 24 {
			b.Fatal(len(ws), err)
		}
	}
}

// BenchmarkEndingDue closes one hour's windows (1,000, one per key) among
// a day of them; ns/op is per due window.
func BenchmarkEndingDue(b *testing.B) {
	s, _ := benchStore(b, 1000, 24)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		h := int64(i % 24)
		if err := s.Ending((h+1)*hour, (h+2)*hour, func(Window) bool { n++; return true }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/window")
}
