package windowstore

import (
	"strconv"
	"testing"
)

// benchStore is a store with keys devices, each with a window per hour for
// hours hours.
func benchStore(b *testing.B, devices, hours int) (*Store, [][]byte) {
	return benchStoreOpts(b, devices, hours, Options{})
}

// benchStoreOpts is benchStore with opts (their Dir, SegmentInterval and
// Retention set here).
func benchStoreOpts(b *testing.B, devices, hours int, opts Options) (*Store, [][]byte) {
	b.Helper()
	opts.Dir, opts.SegmentInterval, opts.Retention = b.TempDir(), 6*hour, day
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
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
// reads and updates its key's current window (direct: read the old end,
// write window and index in one batch; buffered: into the write buffer,
// written 1 MiB at a time), 20,000 keys in turn (more than the buffer
// holds: as in a catch-up, where a device's records are far apart).
func BenchmarkPutUpdate(b *testing.B) {
	for _, c := range []struct {
		name          string
		buffer, cache int
	}{
		{"direct", 0, 0},
		{"buffered", 1 << 20, -1},
		// A cache that holds every key's window (live traffic's open
		// windows), and the default one, which holds a fraction.
		{"buffered-cached", 1 << 20, 64 << 20},
		{"buffered-default-cache", 1 << 20, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, keys := benchStoreOpts(b, 20_000, 1, Options{WriteBuffer: c.buffer, CacheBytes: c.cache})
			value := make([]byte, 96)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := keys[(i*7919)%len(keys)]
				if _, _, err := s.Get(k, 0); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Put(k, 0, hour, value); err != nil {
					b.Fatal(err)
				}
			}
		})
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
