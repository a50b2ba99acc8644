// Package sinktest is the conformance suite of sinks.Store: every
// implementation runs Run from its tests and must pass it. The suite uses
// only the sinks.Store interface.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// Run runs the conformance suite. open returns a new, empty store for one
// subtest; Run closes it when the subtest ends. Stores that share a backend
// across subtests (a Cassandra keyspace) must still look empty: open may
// return a store on a fresh table or keyspace, since the suite's subtests
// reuse device ids.
func Run(t *testing.T, open func(t *testing.T) sinks.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s sinks.Store)
	}{
		{"WriteReadBack", testWriteReadBack},
		{"IdempotentRewrite", testIdempotentRewrite},
		{"IdentityDistinguishes", testIdentityDistinguishes},
		{"QueryBounds", testQueryBounds},
		{"Paging", testPaging},
		{"OtherDevicesInvisible", testOtherDevicesInvisible},
		{"EmptyWrite", testEmptyWrite},
		{"ConcurrentWriters", testConcurrentWriters},
		{"CancelledContext", testCancelledContext},
		{"LargeBatch", testLargeBatch},
		{"PartitionOverPages", testPartitionOverPages},
		{"HighDeviceIDs", testHighDeviceIDs},
	}
	runEach(t, open, tests)
}

// runEach runs each test as a subtest on a store that open returns, closed
// when the subtest ends if it has a Close method.
func runEach[S any](t *testing.T, open func(t *testing.T) S, tests []struct {
	name string
	fn   func(t *testing.T, s S)
}) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if c, ok := any(s).(interface{ Close() error }); ok {
				t.Cleanup(func() {
					if err := c.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
			}
			tc.fn(t, s)
		})
	}
}

// baseMs is the time of the suite's readings: 2025-06-01T00:00:00Z.
const baseMs = 1748736000000

// Sample returns one reading of each message type of device dev, at
// baseMs + offsetMs + i for the i-th, with values that use every field of
// the type at the precision the records codec keeps.
func Sample(dev uint64, offsetMs uint64) []records.Reading {
	t := baseMs + offsetMs
	return []records.Reading{
		{DeviceID: dev, TimeMs: t, ContentCRC: 0x11111111, Type: protocol.TypeGPS,
			LatDeg: 52.5200066, LonDeg: -13.4049540, SpeedKmh: 87.3, HeadingDeg: 271, Hdop: 0.9, Satellites: 11},
		{DeviceID: dev, TimeMs: t + 1, ContentCRC: 0x22222222, Type: protocol.TypeAccel,
			XG: 0.012, YG: -0.981, ZG: 1.5},
		{DeviceID: dev, TimeMs: t + 2, ContentCRC: 0x33333333, Type: protocol.TypeEngine,
			RPM: 2450, CoolantC: -12, FuelPct: 63},
		{DeviceID: dev, TimeMs: t + 3, ContentCRC: 0x44444444, Type: protocol.TypeEvent,
			EventCode: float64(protocol.EventHarshBrake), Severity: 3},
		{DeviceID: dev, TimeMs: t + 4, ContentCRC: 0xffffffff, Type: protocol.TypeBattery,
			BatteryV: 12.604},
	}
}

// msTime returns the time.Time of Unix millisecond ms.
func msTime(ms uint64) time.Time { return time.UnixMilli(int64(ms)) }

func write(t *testing.T, s sinks.Store, rs []records.Reading) {
	t.Helper()
	// An outage (a real store timing out under a loaded machine) is what
	// the sink waits out and writes again, the write being idempotent:
	// these tests are about what is stored, so they do the same, a few
	// times. Any other error, or an outage that lasts, fails.
	var err error
	for attempt := range 4 {
		if err = s.Write(context.Background(), rs); err == nil || !errors.Is(err, sinks.ErrUnavailable) {
			break
		}
		t.Logf("Write(%d readings), attempt %d: %v; writing again", len(rs), attempt+1, err)
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
	if err != nil {
		t.Fatalf("Write(%d readings): %v", len(rs), err)
	}
}

func query(t *testing.T, s sinks.Store, q sinks.Query) []records.Reading {
	t.Helper()
	got, err := s.Readings(context.Background(), q)
	if err != nil {
		t.Fatalf("Readings(%+v): %v", q, err)
	}
	return got
}

// sorted returns a copy of rs ordered by time, then CRC: the order of
// Readings.
func sorted(rs []records.Reading) []records.Reading {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b records.Reading) int {
		if a.TimeMs != b.TimeMs {
			if a.TimeMs < b.TimeMs {
				return -1
			}
			return 1
		}
		switch {
		case a.ContentCRC < b.ContentCRC:
			return -1
		case a.ContentCRC > b.ContentCRC:
			return 1
		}
		return 0
	})
	return out
}

// equal reports the first difference between got and want, rows of the
// same store.
func equal[T any](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d rows, want %d\ngot:  %+v\nwant: %+v", what, len(got), len(want), got, want)
		return
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: row %d:\ngot:  %+v\nwant: %+v", what, i, got[i], want[i])
			return
		}
	}
}

func testWriteReadBack(t *testing.T, s sinks.Store) {
	want := Sample(7, 0)
	// Write them out of order: the store orders them.
	write(t, s, []records.Reading{want[3], want[0], want[4], want[2], want[1]})
	equal(t, "read back", query(t, s, sinks.Query{DeviceID: 7}), want)
}

func testIdempotentRewrite(t *testing.T, s sinks.Store) {
	rs := Sample(7, 0)
	write(t, s, rs)
	write(t, s, rs)
	// Twice in one batch too.
	write(t, s, append(slices.Clone(rs[:2]), rs[:2]...))
	equal(t, "after rewrites", query(t, s, sinks.Query{DeviceID: 7}), rs)

	changed := slices.Clone(rs)
	changed[0].SpeedKmh = 12.5
	changed[2].RPM = 800
	changed[4].BatteryV = 11.9
	write(t, s, changed)
	equal(t, "after a rewrite with changed values", query(t, s, sinks.Query{DeviceID: 7}), changed)
}

func testIdentityDistinguishes(t *testing.T, s sinks.Store) {
	base := records.Reading{DeviceID: 9, TimeMs: baseMs, ContentCRC: 0xabcdef01, Type: protocol.TypeBattery, BatteryV: 12}
	sameTimeOtherCRC := base
	sameTimeOtherCRC.ContentCRC = 0xabcdef02
	sameTimeOtherCRC.BatteryV = 12.5
	sameCRCOtherTime := base
	sameCRCOtherTime.TimeMs++
	sameCRCOtherTime.BatteryV = 13
	otherDevice := base
	otherDevice.DeviceID = 10
	otherDevice.BatteryV = 14
	write(t, s, []records.Reading{base, sameTimeOtherCRC, sameCRCOtherTime, otherDevice})

	equal(t, "device 9", query(t, s, sinks.Query{DeviceID: 9}),
		[]records.Reading{base, sameTimeOtherCRC, sameCRCOtherTime})
	equal(t, "device 10", query(t, s, sinks.Query{DeviceID: 10}), []records.Reading{otherDevice})
}

func testQueryBounds(t *testing.T, s sinks.Store) {
	const dev = 42
	// Times baseMs+0..9, two CRCs at each, written in reverse order.
	var all []records.Reading
	for i := uint64(0); i < 10; i++ {
		for _, crc := range []uint32{0x80000000, 0x00000001} {
			all = append(all, records.Reading{DeviceID: dev, TimeMs: baseMs + i, ContentCRC: crc,
				Type: protocol.TypeEngine, RPM: float64(1000 + i), FuelPct: float64(crc % 100)})
		}
	}
	rev := slices.Clone(all)
	slices.Reverse(rev)
	write(t, s, rev)
	want := sorted(all)
	if want[0].ContentCRC != 1 {
		t.Fatal("bad test: sort")
	}
	equal(t, "all", query(t, s, sinks.Query{DeviceID: dev}), want)

	between := func(from, to uint64) []records.Reading {
		var out []records.Reading
		for _, r := range want {
			if r.TimeMs >= from && r.TimeMs < to {
				out = append(out, r)
			}
		}
		return out
	}
	cases := []struct {
		name string
		q    sinks.Query
		want []records.Reading
	}{
		{"from inclusive", sinks.Query{DeviceID: dev, From: msTime(baseMs + 3)}, between(baseMs+3, math.MaxUint64)},
		{"to exclusive", sinks.Query{DeviceID: dev, To: msTime(baseMs + 3)}, between(0, baseMs+3)},
		{"from and to", sinks.Query{DeviceID: dev, From: msTime(baseMs + 2), To: msTime(baseMs + 5)}, between(baseMs+2, baseMs+5)},
		{"one millisecond", sinks.Query{DeviceID: dev, From: msTime(baseMs + 4), To: msTime(baseMs + 5)}, between(baseMs+4, baseMs+5)},
		{"from equals to", sinks.Query{DeviceID: dev, From: msTime(baseMs + 4), To: msTime(baseMs + 4)}, nil},
		{"from after to", sinks.Query{DeviceID: dev, From: msTime(baseMs + 6), To: msTime(baseMs + 4)}, nil},
		{"before all", sinks.Query{DeviceID: dev, To: msTime(baseMs)}, nil},
		{"after all", sinks.Query{DeviceID: dev, From: msTime(baseMs + 10)}, nil},
		{"limit", sinks.Query{DeviceID: dev, Limit: 3}, want[:3]},
		{"limit with from", sinks.Query{DeviceID: dev, From: msTime(baseMs + 7), Limit: 3}, between(baseMs+7, baseMs+9)[:3]},
		{"limit above count", sinks.Query{DeviceID: dev, Limit: 1000}, want},
		{"limit 1 splits a millisecond", sinks.Query{DeviceID: dev, From: msTime(baseMs + 5), Limit: 1}, between(baseMs+5, baseMs+6)[:1]},
	}
	for _, c := range cases {
		got := query(t, s, c.q)
		equal(t, c.name, got, c.want)
	}
}

// testPaging pages through three days of a device's rows, newest first
// and oldest first, each page resuming after the last row of the one
// before; two rows share each millisecond, one with the largest CRC.
func testPaging(t *testing.T, s sinks.Store) {
	const dev = 43
	const dayMs = 24 * 60 * 60 * 1000
	var all []records.Reading
	for day := uint64(0); day < 3; day++ {
		for i := uint64(0); i < 7; i++ {
			for _, crc := range []uint32{math.MaxUint32, 7} {
				all = append(all, records.Reading{DeviceID: dev, TimeMs: baseMs + day*dayMs + i*1000, ContentCRC: crc,
					Type: protocol.TypeBattery, BatteryV: float64(i)})
			}
		}
	}
	write(t, s, all)
	write(t, s, []records.Reading{{DeviceID: dev + 1, TimeMs: baseMs + 1500, ContentCRC: 1, Type: protocol.TypeBattery}})
	asc := sorted(all)
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	within := func(rs []records.Reading, from, to uint64) []records.Reading {
		var out []records.Reading
		for _, r := range rs {
			if r.TimeMs >= from && r.TimeMs < to {
				out = append(out, r)
			}
		}
		return out
	}
	page := func(q sinks.Query) [][]records.Reading {
		var pages [][]records.Reading
		for n := 0; ; n++ {
			if n > len(all) {
				t.Fatalf("%+v: more pages than rows", q)
			}
			got := query(t, s, q)
			if len(got) > q.Limit {
				t.Fatalf("%+v: %d rows, over the limit", q, len(got))
			}
			if len(got) == 0 {
				return pages
			}
			pages = append(pages, got)
			last := got[len(got)-1]
			q.After = &sinks.Position{TimeMs: last.TimeMs, ContentCRC: last.ContentCRC}
		}
	}
	from, to := uint64(baseMs+3000), uint64(baseMs+2*dayMs+5000)
	for _, c := range []struct {
		name string
		q    sinks.Query
		want []records.Reading
	}{
		{"newest first", sinks.Query{DeviceID: dev, Newest: true, Limit: 4}, desc},
		{"newest first, one a page", sinks.Query{DeviceID: dev, Newest: true, Limit: 1}, desc},
		{"newest first in a range", sinks.Query{DeviceID: dev, Newest: true, Limit: 5, From: msTime(from), To: msTime(to)}, within(desc, from, to)},
		{"oldest first in a range", sinks.Query{DeviceID: dev, Limit: 5, From: msTime(from), To: msTime(to)}, within(asc, from, to)},
		{"oldest first", sinks.Query{DeviceID: dev, Limit: 3}, asc},
	} {
		pages := page(c.q)
		if want := (len(c.want) + c.q.Limit - 1) / c.q.Limit; len(pages) != want {
			t.Errorf("%s: %d pages, want %d", c.name, len(pages), want)
		}
		for i, p := range pages[:max(len(pages)-1, 0)] {
			if len(p) != c.q.Limit {
				t.Errorf("%s: page %d has %d rows, want a full page of %d", c.name, i, len(p), c.q.Limit)
			}
		}
		equal(t, c.name, slices.Concat(pages...), c.want)
	}
	// A cursor past the range's end, newest first, starts at the end.
	equal(t, "after beyond to", query(t, s, sinks.Query{DeviceID: dev, Newest: true, From: msTime(from), To: msTime(to),
		After: &sinks.Position{TimeMs: baseMs + 9*dayMs}}), within(desc, from, to))
}

func testOtherDevicesInvisible(t *testing.T, s sinks.Store) {
	// Neighbouring ids on both sides, and one far away.
	ids := []uint64{99, 100, 101, 1 << 40}
	for i, id := range ids {
		write(t, s, Sample(id, uint64(i)*10))
	}
	for i, id := range ids {
		equal(t, fmt.Sprintf("device %d", id), query(t, s, sinks.Query{DeviceID: id}), Sample(id, uint64(i)*10))
	}
	if got := query(t, s, sinks.Query{DeviceID: 102}); len(got) != 0 {
		t.Errorf("device 102 (never written): got %d readings, want none", len(got))
	}
}

func testEmptyWrite(t *testing.T, s sinks.Store) {
	ctx := context.Background()
	if err := s.Write(ctx, nil); err != nil {
		t.Errorf("Write(nil): %v", err)
	}
	if err := s.Write(ctx, []records.Reading{}); err != nil {
		t.Errorf("Write(empty): %v", err)
	}
	if got := query(t, s, sinks.Query{DeviceID: 7}); len(got) != 0 {
		t.Errorf("got %d readings after empty writes, want none", len(got))
	}
}

func testConcurrentWriters(t *testing.T, s sinks.Store) {
	const writers, batches, perBatch = 8, 10, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Writer w and writer w+writers/2 write the same rows of
			// device 1000+w: the rewrites race and must leave one row each.
			dev := uint64(1000 + w)
			if w >= writers/2 {
				dev = uint64(1000 + w - writers/2)
			}
			for b := range batches {
				rs := make([]records.Reading, perBatch)
				for i := range rs {
					rs[i] = records.Reading{DeviceID: dev, TimeMs: baseMs + uint64(b*perBatch+i),
						ContentCRC: uint32(i), Type: protocol.TypeAccel, ZG: 1}
				}
				if err := s.Write(ctx, rs); err != nil {
					errs <- err
					return
				}
				if _, err := s.Readings(ctx, sinks.Query{DeviceID: dev, Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	for w := range writers / 2 {
		dev := uint64(1000 + w)
		got := query(t, s, sinks.Query{DeviceID: dev})
		if len(got) != batches*perBatch {
			t.Errorf("device %d: got %d rows, want %d", dev, len(got), batches*perBatch)
			continue
		}
		for i, r := range got {
			if r.TimeMs != baseMs+uint64(i) || r.ContentCRC != uint32(i%perBatch) {
				t.Errorf("device %d: row %d is (%d, %d), want (%d, %d)", dev, i, r.TimeMs, r.ContentCRC, baseMs+uint64(i), i%perBatch)
				break
			}
		}
	}
}

func testCancelledContext(t *testing.T, s sinks.Store) {
	write(t, s, Sample(7, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, Sample(7, 100)); err == nil {
		t.Error("Write with a cancelled context: no error")
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context: %v, does not wrap context.Canceled", err)
	}
	if _, err := s.Readings(ctx, sinks.Query{DeviceID: 7}); err == nil {
		t.Error("Readings with a cancelled context: no error")
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("Readings with a cancelled context: %v, does not wrap context.Canceled", err)
	}
	// The store still works with a live context.
	equal(t, "after cancelled calls", query(t, s, sinks.Query{DeviceID: 7, To: msTime(baseMs + 100)}), Sample(7, 0))
}

func testLargeBatch(t *testing.T, s sinks.Store) {
	const n = 5000
	rs := make([]records.Reading, n)
	for i := range rs {
		rs[i] = records.Reading{DeviceID: 77, TimeMs: baseMs + uint64(i/2), ContentCRC: uint32(i % 2),
			Type: protocol.TypeGPS, LatDeg: float64(i) / 1e7, LonDeg: -float64(i) / 1e7,
			SpeedKmh: float64(i%1000) / 10, HeadingDeg: float64(i % 360), Hdop: 1.2, Satellites: 9}
	}
	write(t, s, rs)
	equal(t, "5,000 rows", query(t, s, sinks.Query{DeviceID: 77}), rs)
	equal(t, "limit in a large range", query(t, s, sinks.Query{DeviceID: 77, From: msTime(baseMs + 1000), Limit: 10}), rs[2000:2010])
}

// testPartitionOverPages reads back one device's day holding more rows
// than a driver page (Cassandra's store pages by 5,000): 12,345 rows of
// every type, written in the sink's batches, so that the partition spans
// three pages; whole, newest first, and with limits that end on another
// page. The CI-size fault run never fills a page per device; the full size
// does.
func testPartitionOverPages(t *testing.T, s sinks.Store) {
	const dev, n = 78, 12345
	types := []protocol.MsgType{protocol.TypeGPS, protocol.TypeAccel, protocol.TypeEngine, protocol.TypeEvent, protocol.TypeBattery}
	rs := make([]records.Reading, n)
	for i := range rs {
		rs[i] = records.Reading{DeviceID: dev, TimeMs: baseMs + uint64(i)*37, ContentCRC: uint32(i * 7919), Type: types[i%len(types)]}
		switch rs[i].Type {
		case protocol.TypeGPS:
			rs[i].LatDeg, rs[i].Satellites = float64(i)/1e6, 9
		case protocol.TypeAccel:
			rs[i].ZG = float64(i)
		case protocol.TypeEngine:
			rs[i].RPM = float64(i)
		case protocol.TypeEvent:
			rs[i].EventCode = float64(i % 50)
		case protocol.TypeBattery:
			rs[i].BatteryV = 12
		}
	}
	for chunk := range slices.Chunk(rs, 500) {
		write(t, s, chunk)
	}
	asc := sorted(rs)
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	equal(t, "12,345 rows of one day", query(t, s, sinks.Query{DeviceID: dev}), asc)
	equal(t, "newest first", query(t, s, sinks.Query{DeviceID: dev, Newest: true}), desc)
	equal(t, "limit past two pages", query(t, s, sinks.Query{DeviceID: dev, Limit: 11000}), asc[:11000])
	equal(t, "from the middle", query(t, s, sinks.Query{DeviceID: dev, From: msTime(asc[4000].TimeMs)}), asc[4000:])
}

func testHighDeviceIDs(t *testing.T, s sinks.Store) {
	// Ids at and above 2^63 must not sort or compare as negative numbers.
	ids := []uint64{1, 1<<63 - 1, 1 << 63, 1<<63 + 1, math.MaxUint64 - 1, math.MaxUint64}
	for i, id := range ids {
		write(t, s, Sample(id, uint64(i)))
	}
	for i, id := range ids {
		equal(t, fmt.Sprintf("device %d", id), query(t, s, sinks.Query{DeviceID: id}), Sample(id, uint64(i)))
	}
	equal(t, "max device with bounds",
		query(t, s, sinks.Query{DeviceID: math.MaxUint64, From: msTime(baseMs + 6), To: msTime(baseMs + 8)}),
		Sample(math.MaxUint64, uint64(len(ids)-1))[1:3])
}
