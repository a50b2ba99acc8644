package local

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/sinktest"
)

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
	}{{"Sync", Options{}}, {"NoSync", Options{NoSync: true}}} {
		t.Run(c.name, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinks.Store { return open(t, t.TempDir(), c.opts) })
		})
	}
}

func mustWrite(t *testing.T, s *Store, rs []records.Reading) {
	t.Helper()
	if err := s.Write(context.Background(), rs); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func mustReadings(t *testing.T, s *Store, q sinks.Query) []records.Reading {
	t.Helper()
	got, err := s.Readings(context.Background(), q)
	if err != nil {
		t.Fatalf("Readings: %v", err)
	}
	return got
}

func sameReadings(t *testing.T, what string, got, want []records.Reading) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:  %+v\nwant: %+v", what, got, want)
	}
}

func TestReopenKeepsRows(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a, b := sinktest.Sample(1, 0), sinktest.Sample(math.MaxUint64, 0)
	mustWrite(t, s, a)
	mustWrite(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	sameReadings(t, "device 1 after reopen", mustReadings(t, s, sinks.Query{DeviceID: 1}), a)
	sameReadings(t, "device max after reopen", mustReadings(t, s, sinks.Query{DeviceID: math.MaxUint64}), b)
}

func TestCountAndDevices(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	ctx := context.Background()
	ids, err := s.Devices(ctx)
	if err != nil || len(ids) != 0 {
		t.Fatalf("Devices on an empty store = %v, %v; want none", ids, err)
	}
	want := []uint64{0, 5, 6, 1 << 63, math.MaxUint64}
	for i, id := range slices.Backward(want) {
		rs := sinktest.Sample(id, 0)[:i+1]
		mustWrite(t, s, rs)
		mustWrite(t, s, rs) // rewrites do not count
	}
	ids, err = s.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("Devices = %v, want %v", ids, want)
	}
	for i, id := range want {
		n, err := s.Count(ctx, id)
		if err != nil {
			t.Fatalf("Count(%d): %v", id, err)
		}
		if wantN := i + 1; n != wantN {
			t.Errorf("Count(%d) = %d, want %d", id, n, wantN)
		}
	}
	if n, err := s.Count(ctx, 7); err != nil || n != 0 {
		t.Errorf("Count(7) = %d, %v; want 0", n, err)
	}
}

func TestClosedStoreFailsPermanently(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	mustWrite(t, s, sinktest.Sample(1, 0))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s on a closed store: no error", what)
		case !errors.Is(err, ErrClosed):
			t.Errorf("%s on a closed store: %v, does not wrap ErrClosed", what, err)
		case errors.Is(err, sinks.ErrUnavailable):
			t.Errorf("%s on a closed store: %v wraps sinks.ErrUnavailable; want a permanent error", what, err)
		}
	}
	check("Write", s.Write(ctx, sinktest.Sample(1, 100)))
	check("empty Write", s.Write(ctx, nil))
	_, err := s.Readings(ctx, sinks.Query{DeviceID: 1})
	check("Readings", err)
	_, err = s.Count(ctx, 1)
	check("Count", err)
	_, err = s.Devices(ctx)
	check("Devices", err)
}

func TestSecondWriterCannotOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	defer s.Close()
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

func TestReadOnly(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Options{ReadOnly: true}); err == nil {
		t.Error("read-only Open of a missing directory succeeded")
	}
	dir := t.TempDir()
	s := open(t, dir, Options{})
	want := sinktest.Sample(3, 0)
	mustWrite(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro := open(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	sameReadings(t, "read-only", mustReadings(t, ro, sinks.Query{DeviceID: 3}), want)
	err := ro.Write(context.Background(), sinktest.Sample(3, 100))
	if !errors.Is(err, ErrReadOnly) || errors.Is(err, sinks.ErrUnavailable) {
		t.Errorf("Write on a read-only store: %v; want a permanent error wrapping ErrReadOnly", err)
	}
}

// TestKeyLayout checks the documented row layout in the database itself.
func TestKeyLayout(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	r := records.Reading{DeviceID: 1<<63 + 5, TimeMs: 0x0102030405060708, ContentCRC: 0xa1b2c3d4,
		Type: protocol.TypeBattery, BatteryV: 12.5}
	mustWrite(t, s, []records.Reading{r})
	want := []byte{0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 0xa1, 0xb2, 0xc3, 0xd4}
	it := s.db.NewIterator(nil, nil)
	defer it.Release()
	n := 0
	for it.Next() {
		n++
		if !slices.Equal(it.Key(), want) {
			t.Errorf("key %x, want %x", it.Key(), want)
		}
		got, err := records.ReadingCodec{}.Decode(it.Value())
		if err != nil || got != r {
			t.Errorf("value decodes to %+v, %v; want %+v", got, err, r)
		}
	}
	if n != 1 {
		t.Errorf("%d rows in the database, want 1", n)
	}
}

func TestCorruptRowIsPermanent(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	if err := s.db.Put(AppendKey(nil, 4, 1000, 1), []byte{0xff, 0xff}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.Readings(context.Background(), sinks.Query{DeviceID: 4})
	if err == nil || errors.Is(err, sinks.ErrUnavailable) {
		t.Errorf("Readings of an undecodable row: %v; want a permanent error", err)
	}
	// A value of another identity than its key is corruption too.
	v, _ := records.ReadingCodec{}.Encode(records.Reading{DeviceID: 4, TimeMs: 2000, ContentCRC: 1, Type: protocol.TypeAccel})
	if err := s.db.Put(AppendKey(nil, 5, 1000, 1), v, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.Readings(context.Background(), sinks.Query{DeviceID: 5})
	if err == nil || errors.Is(err, sinks.ErrUnavailable) {
		t.Errorf("Readings of a row whose value is another reading: %v; want a permanent error", err)
	}
}

func TestSubMillisecondBounds(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	rs := []records.Reading{
		{DeviceID: 1, TimeMs: 1000, Type: protocol.TypeAccel, XG: 1},
		{DeviceID: 1, TimeMs: 1001, Type: protocol.TypeAccel, XG: 2},
		{DeviceID: 1, TimeMs: 1002, Type: protocol.TypeAccel, XG: 3},
	}
	mustWrite(t, s, rs)
	half := func(ms int64) time.Time { return time.UnixMilli(ms).Add(500 * time.Microsecond) }
	// From 1000.5 ms excludes 1000; To 1001.5 ms includes 1001.
	sameReadings(t, "[1000.5, 1001.5)", mustReadings(t, s, sinks.Query{DeviceID: 1, From: half(1000), To: half(1001)}), rs[1:2])
	// Times before 1970 leave From open and To empty.
	sameReadings(t, "from before 1970", mustReadings(t, s, sinks.Query{DeviceID: 1, From: time.Unix(-5, 0)}), rs)
	sameReadings(t, "to before 1970", mustReadings(t, s, sinks.Query{DeviceID: 1, To: time.Unix(-5, 0)}), nil)
	// A time past what UnixMilli can hold.
	far := time.Date(300000000, 1, 1, 0, 0, 0, 0, time.UTC)
	sameReadings(t, "to far future", mustReadings(t, s, sinks.Query{DeviceID: 1, To: far}), rs)
	sameReadings(t, "from far future", mustReadings(t, s, sinks.Query{DeviceID: 1, From: far}), nil)
	if _, err := s.Readings(context.Background(), sinks.Query{DeviceID: 1, Limit: -1}); err == nil {
		t.Error("negative Limit: no error")
	}
}

// faultStorage makes every write to a file fail with ENOSPC while full is
// set, as a full disk does.
type faultStorage struct {
	storage.Storage
	full *atomic.Bool
}

func (f faultStorage) Create(fd storage.FileDesc) (storage.Writer, error) {
	if f.full.Load() {
		return nil, &pathError{"create " + fd.String()}
	}
	w, err := f.Storage.Create(fd)
	if err != nil {
		return nil, err
	}
	return faultWriter{w, f.full}, nil
}

type faultWriter struct {
	storage.Writer
	full *atomic.Bool
}

func (w faultWriter) Write(p []byte) (int, error) {
	if w.full.Load() {
		return 0, &pathError{"write"}
	}
	return w.Writer.Write(p)
}

func (w faultWriter) Sync() error {
	if w.full.Load() {
		return &pathError{"sync"}
	}
	return w.Writer.Sync()
}

type pathError struct{ op string }

func (e *pathError) Error() string { return e.op + ": " + syscall.ENOSPC.Error() }
func (e *pathError) Unwrap() error { return syscall.ENOSPC }

// TestFullDiskPasses checks that a full disk fails writes with
// sinks.ErrUnavailable, keeps doing so while the disk stays full, and that
// a retry succeeds once there is space again, losing no row.
func TestFullDiskPasses(t *testing.T) {
	dir := t.TempDir()
	full := new(atomic.Bool)
	s := open(t, dir, Options{wrapStorage: func(st storage.Storage) storage.Storage { return faultStorage{st, full} }})
	ctx := context.Background()
	a, b := sinktest.Sample(1, 0), sinktest.Sample(1, 100)
	mustWrite(t, s, a)

	full.Store(true)
	for i := range 3 {
		err := s.Write(ctx, b)
		if !errors.Is(err, sinks.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Write %d on a full disk: %v; want an error wrapping sinks.ErrUnavailable and ENOSPC", i, err)
		}
	}
	if _, err := s.Readings(ctx, sinks.Query{DeviceID: 1}); !errors.Is(err, sinks.ErrUnavailable) {
		t.Errorf("Readings while the disk is full and the store reopening: %v; want sinks.ErrUnavailable", err)
	}

	full.Store(false)
	if err := s.Write(ctx, b); err != nil {
		t.Fatalf("Write after space came back: %v", err)
	}
	want := append(slices.Clone(a), b...)
	sameReadings(t, "after the retry", mustReadings(t, s, sinks.Query{DeviceID: 1}), want)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	sameReadings(t, "after reopening", mustReadings(t, s, sinks.Query{DeviceID: 1}), want)
}

func TestCancelledScan(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Count(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Count with a cancelled context: %v", err)
	}
	if _, err := s.Devices(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Devices with a cancelled context: %v", err)
	}
}

// batch40 returns the i-th batch of 40 readings of a 1,000-device fleet,
// as the sink processor writes them: one device's package.
func batch40(i int) []records.Reading {
	dev := uint64(i % 1000)
	rs := make([]records.Reading, 40)
	for j := range rs {
		rs[j] = records.Reading{DeviceID: dev, TimeMs: 1748736000000 + uint64(i/1000*40+j)*250,
			ContentCRC: uint32(i*40 + j), Type: protocol.TypeGPS,
			LatDeg: 52.52 + float64(j)/1e5, LonDeg: 13.405, SpeedKmh: 50.5, HeadingDeg: 90, Hdop: 0.8, Satellites: 10}
	}
	return rs
}

func BenchmarkWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		opts Options
	}{{"Sync", Options{}}, {"NoSync", Options{NoSync: true}}} {
		b.Run(c.name, func(b *testing.B) {
			s := open(b, b.TempDir(), c.opts)
			defer s.Close()
			ctx := context.Background()
			batches := 0
			for b.Loop() {
				if err := s.Write(ctx, batch40(batches)); err != nil {
					b.Fatal(err)
				}
				batches++
			}
			b.ReportMetric(float64(batches*40)/b.Elapsed().Seconds(), "rows/s")
		})
		// Concurrent writers, as several sink partitions in one process:
		// leveldb merges their batches into one journal write and fsync.
		for _, writers := range []int{4, 16} {
			b.Run(fmt.Sprintf("%s/writers=%d", c.name, writers), func(b *testing.B) {
				s := open(b, b.TempDir(), c.opts)
				defer s.Close()
				ctx := context.Background()
				var next atomic.Int64
				b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Write(ctx, batch40(int(next.Add(1)))); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(next.Load()*40)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

func TestSummariesConformance(t *testing.T) {
	sinktest.RunSummaries(t, func(t *testing.T) sinks.SummaryStore { return open(t, t.TempDir(), Options{NoSync: true}) })
}

// A read-only store reads the summaries written before, and a store
// written before summaries existed (no summaries database) has none.
func TestReadOnlySummaries(t *testing.T) {
	ctx := context.Background()
	old := t.TempDir()
	s := open(t, old, Options{})
	mustWrite(t, s, sinktest.Sample(3, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro := open(t, old, Options{ReadOnly: true})
	if got, err := ro.Summaries(ctx, sinks.SummaryQuery{DeviceID: 3}); err != nil || got != nil {
		t.Errorf("summaries of a store without any: %v, %v", got, err)
	}
	ro.Close()

	dir := t.TempDir()
	s = open(t, dir, Options{})
	want := []records.Summary{sinktest.SampleSummary(3, 0), sinktest.SampleSummary(3, 1)}
	if err := s.WriteSummaries(ctx, want); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, sinktest.Sample(3, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro = open(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	got, err := ro.Summaries(ctx, sinks.SummaryQuery{DeviceID: 3})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("read-only summaries = %+v, %v; want %+v", got, err, want)
	}
	if n, err := ro.Count(ctx, 3); err != nil || n != len(sinktest.Sample(3, 0)) {
		t.Errorf("readings beside the summaries: %d, %v", n, err)
	}
	if err := ro.WriteSummaries(ctx, want); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteSummaries on a read-only store: %v", err)
	}
}
