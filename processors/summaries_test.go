package processors

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
)

const hourMs = records.SummaryWindowMs

// w0 is the start of the window the tests aggregate.
const w0 = 1_764_000_000_000 - 1_764_000_000_000%hourMs

func gps(t uint64, crc uint32, lat, lon, speed float64) records.Reading {
	return records.Reading{DeviceID: 9, TimeMs: t, ContentCRC: crc, Type: protocol.TypeGPS, LatDeg: lat, LonDeg: lon, SpeedKmh: speed}
}

func event(t uint64, crc uint32, code protocol.EventCode) records.Reading {
	return records.Reading{DeviceID: 9, TimeMs: t, ContentCRC: crc, Type: protocol.TypeEvent, EventCode: float64(code), Severity: 2}
}

func engine(t uint64, crc uint32) records.Reading {
	return records.Reading{DeviceID: 9, TimeMs: t, ContentCRC: crc, Type: protocol.TypeEngine, RPM: 900, CoolantC: 80}
}

func pkg(offset int64, items ...records.Reading) records.Readings {
	return records.Readings{DeviceID: 9, Items: items, RawOffset: offset, Part: -1}
}

func TestHaversine(t *testing.T) {
	for _, c := range []struct {
		lat1, lon1, lat2, lon2, want float64
	}{
		{0, 0, 0, 0, 0},
		{0, 0, 0, 1, EarthRadiusM * math.Pi / 180},          // a degree along the equator
		{0, 0, 1, 0, EarthRadiusM * math.Pi / 180},          // a degree along a meridian
		{0, 179.5, 0, -179.5, EarthRadiusM * math.Pi / 180}, // across the antimeridian
		{90, 0, -90, 0, EarthRadiusM * math.Pi},             // pole to pole
		{52.5, 13.4, 52.5, 13.4, 0},
	} {
		got := HaversineM(c.lat1, c.lon1, c.lat2, c.lon2)
		if math.Abs(got-c.want) > 1e-6 {
			t.Errorf("HaversineM(%v, %v, %v, %v) = %v, want %v", c.lat1, c.lon1, c.lat2, c.lon2, got, c.want)
		}
	}
}

func TestSummaryAggregator(t *testing.T) {
	deg := EarthRadiusM * math.Pi / 180 // a degree of the equator, metres
	for _, c := range []struct {
		name string
		pkgs []records.Readings
		want records.Summary
	}{
		{name: "empty", want: records.Summary{}},
		{
			name: "one fix",
			pkgs: []records.Readings{pkg(1, gps(w0+10, 1, 0, 0, 50))},
			want: records.Summary{Messages: 1, GPSFixes: 1, MaxSpeedKmh: 50, AvgSpeedKmh: 50, FirstMs: w0 + 10, LastMs: w0 + 10},
		},
		{
			// Fixes arrive out of time order: the distance follows time
			// order (0 -> 1 -> 2 degrees, not 0 -> 2 -> 1).
			name: "out of order fixes",
			pkgs: []records.Readings{
				pkg(1, gps(w0+100, 1, 0, 0, 10), gps(w0+300, 3, 0, 2, 30)),
				pkg(2, gps(w0+200, 2, 0, 1, 20)),
			},
			want: records.Summary{Messages: 3, GPSFixes: 3, DistanceM: 2 * deg, MaxSpeedKmh: 30, AvgSpeedKmh: 20, FirstMs: w0 + 100, LastMs: w0 + 300},
		},
		{
			name: "harsh events by kind, other events and types counted as messages only",
			pkgs: []records.Readings{pkg(1,
				event(w0+1, 1, protocol.EventHarshBrake), event(w0+2, 2, protocol.EventHarshBrake),
				event(w0+3, 3, protocol.EventHarshCorner), event(w0+4, 4, protocol.EventHarshAccel),
				event(w0+5, 5, protocol.EventCollision), event(w0+6, 6, protocol.EventIgnitionOn),
				engine(w0+7, 7))},
			want: records.Summary{Messages: 7, FirstMs: w0 + 1, LastMs: w0 + 7, Harsh: map[protocol.EventCode]uint64{
				protocol.EventHarshBrake: 2, protocol.EventHarshCorner: 1, protocol.EventHarshAccel: 1}},
		},
		{
			// A package spanning the window's edges adds only what is
			// inside: the start inclusive, the end exclusive.
			name: "readings outside the window",
			pkgs: []records.Readings{pkg(1, engine(w0-1, 1), engine(w0, 2), gps(w0+hourMs-1, 3, 1, 1, 5), gps(w0+hourMs, 4, 2, 2, 99))},
			want: records.Summary{Messages: 2, GPSFixes: 1, MaxSpeedKmh: 5, AvgSpeedKmh: 5, FirstMs: w0, LastMs: w0 + hourMs - 1},
		},
		{
			name: "a replayed package is added once",
			pkgs: []records.Readings{
				pkg(7, gps(w0+100, 1, 0, 0, 10), engine(w0+150, 2)),
				pkg(8, gps(w0+200, 3, 0, 1, 30)),
				pkg(7, gps(w0+100, 1, 0, 0, 10), engine(w0+150, 2)),
			},
			want: records.Summary{Messages: 3, GPSFixes: 2, DistanceM: deg, MaxSpeedKmh: 30, AvgSpeedKmh: 20, FirstMs: w0 + 100, LastMs: w0 + 200},
		},
		{
			// Without an identity (records older than format version 3)
			// a package cannot be recognised: it counts again.
			name: "packages without identity",
			pkgs: []records.Readings{pkg(0, engine(w0+1, 1)), pkg(0, engine(w0+1, 1))},
			want: records.Summary{Messages: 2, FirstMs: w0 + 1, LastMs: w0 + 1},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			acc := InitSummary(9, w0)
			for i := range c.pkgs {
				AddSummary(&acc, &c.pkgs[i])
			}
			got := Summarize(&acc)
			c.want.DeviceID, c.want.WindowStartMs, c.want.WindowEndMs = 9, w0, w0+hourMs
			if math.Abs(got.DistanceM-c.want.DistanceM) > 1e-6 {
				t.Errorf("distance %v, want %v", got.DistanceM, c.want.DistanceM)
			}
			got.DistanceM = c.want.DistanceM
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("summary\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// AddSummary reports whether it changed the aggregate: a package with
// nothing in the window, or a replay, does not.
func TestAddSummaryReportsChange(t *testing.T) {
	acc := InitSummary(9, w0)
	outside := pkg(1, engine(w0+hourMs, 1))
	inside := pkg(2, engine(w0+5, 2))
	if AddSummary(&acc, &outside) || acc.Messages != 0 || len(acc.Applied) != 0 {
		t.Fatalf("a package outside the window changed the aggregate: %+v", acc)
	}
	if !AddSummary(&acc, &inside) || AddSummary(&acc, &inside) || acc.Messages != 1 {
		t.Fatalf("first add, replay: %+v", acc)
	}
}

// The property the issue demands: whatever order the packages of a window
// arrive in, and however its readings are split into packages, the summary
// is the same, bit for bit; and an aggregate stored and read back between
// records (the windowed table's changelog) changes nothing.
func TestSummaryOrderIndependent(t *testing.T) {
	var codec records.SummaryAccCodec
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 14))
		readings := randomWindow(rng, 20+rng.IntN(300))
		inside := 0
		for _, r := range readings {
			if r.TimeMs < w0+hourMs {
				inside++
			}
		}
		var want records.Summary
		for trial := range 8 {
			rng.Shuffle(len(readings), func(i, j int) { readings[i], readings[j] = readings[j], readings[i] })
			acc := InitSummary(9, w0)
			for i, off := 0, int64(1); i < len(readings); off++ {
				n := 1 + rng.IntN(40)
				p := pkg(off, readings[i:min(i+n, len(readings))]...)
				AddSummary(&acc, &p)
				if rng.IntN(4) == 0 {
					AddSummary(&acc, &p) // a replay
				}
				if rng.IntN(3) == 0 {
					b, err := codec.Encode(acc)
					if err != nil {
						t.Fatal(err)
					}
					if acc, err = codec.Decode(b); err != nil {
						t.Fatal(err)
					}
				}
				i += n
			}
			got := Summarize(&acc)
			if trial == 0 {
				want = got
				if got.Messages != uint64(inside) || got.GPSFixes == 0 || got.DistanceM <= 0 {
					t.Fatalf("seed %d: implausible summary %+v of %d readings in the window", seed, got, inside)
				}
				continue
			}
			if !reflect.DeepEqual(got, want) || math.Float64bits(got.DistanceM) != math.Float64bits(want.DistanceM) {
				t.Fatalf("seed %d, order %d: summary differs\n got %+v\nwant %+v", seed, trial, got, want)
			}
		}
	}
}

// randomWindow returns n readings of one device within the window w0:
// distinct times, about half GPS fixes along a wandering track, events of
// every kind, some other types, and a few readings outside the window.
func randomWindow(rng *rand.Rand, n int) []records.Reading {
	out := make([]records.Reading, 0, n)
	lat, lon := 48.1, 11.5
	t := uint64(w0) + rng.Uint64N(1000)
	for i := range n {
		t += 1 + rng.Uint64N(5000)
		if t >= w0+hourMs {
			t = w0 + rng.Uint64N(hourMs)
		}
		crc := rng.Uint32()
		switch k := rng.IntN(10); {
		case k < 5:
			lat += (rng.Float64() - 0.5) / 100
			lon += (rng.Float64() - 0.5) / 100
			r := gps(t, crc, math.Round(lat*1e7)/1e7, math.Round(lon*1e7)/1e7, float64(rng.IntN(1500))/10)
			out = append(out, r)
		case k < 8:
			out = append(out, event(t, crc, protocol.EventCode(1+rng.IntN(8))))
		default:
			out = append(out, engine(t, crc))
		}
		if i%50 == 49 {
			out = append(out, engine(w0+hourMs+uint64(i), crc)) // outside: never counted
		}
	}
	return out
}

// The aggregation's init returns the zero aggregate: the group's add
// gives it the record's device and the window of its SummaryTime, the
// newest reading's message time (the record's time, that the framework
// put it in the window by); AddSummary itself takes the window from its
// caller and adds nothing to an aggregate without one.
func TestAddSummaryToZeroAggregate(t *testing.T) {
	empty := pkg(1)
	if acc := addToSummary("9", empty, records.SummaryAcc{}); acc.WindowEndMs != 0 || acc.Messages != 0 {
		t.Fatalf("an empty record set the window: %+v", acc)
	}
	// Newest reading last but one: the window is the newest's, and the
	// reading of the hour before is not in it.
	p := pkg(2, engine(w0+5, 1), engine(w0+hourMs+7, 2), engine(w0+hourMs+6, 3))
	acc := addToSummary("9", p, records.SummaryAcc{})
	want := InitSummary(9, w0+hourMs)
	if acc.DeviceID != 9 || acc.WindowStartMs != want.WindowStartMs || acc.WindowEndMs != want.WindowEndMs || acc.Messages != 2 {
		t.Fatalf("aggregate %+v, want the window at %d with 2 readings", acc, want.WindowStartMs)
	}
	if got, ok := SummaryTime("9", p); !ok || !got.Equal(time.UnixMilli(w0+hourMs+7)) {
		t.Errorf("SummaryTime = %v, %v, want the newest reading's", got, ok)
	}
	if _, ok := SummaryTime("9", empty); ok {
		t.Error("SummaryTime of an empty record has a time")
	}
	var zero records.SummaryAcc
	if AddSummary(&zero, &p) || zero.Messages != 0 {
		t.Errorf("AddSummary added to an aggregate without a window: %+v", zero)
	}
}

// A package spanning windows splits into one part per window, every
// reading in exactly one, the package's fields on each; aggregating the
// parts in the windows of their SummaryTime counts every reading once.
func TestSplitByWindow(t *testing.T) {
	p := pkg(7, engine(w0+hourMs+1, 1), engine(w0+5, 2), gps(w0+hourMs+2, 3, 1, 1, 10), engine(w0+6, 4), engine(w0+3*hourMs, 5))
	p.ReceivedMs, p.Duplicates = 99, 2
	parts := SplitByWindow(p)
	if len(parts) != 3 {
		t.Fatalf("%d parts: %+v", len(parts), parts)
	}
	n := 0
	for _, part := range parts {
		w := SummaryWindow(part.Items[0].TimeMs)
		for _, r := range part.Items {
			if SummaryWindow(r.TimeMs) != w {
				t.Errorf("part of window %d holds a reading at %d", w, r.TimeMs)
			}
		}
		if part.RawOffset != 7 || part.ReceivedMs != 99 || part.Duplicates != 2 || part.DeviceID != 9 {
			t.Errorf("part lost the package's fields: %+v", part)
		}
		acc := addToSummary("9", part, records.SummaryAcc{})
		n += int(acc.Messages)
	}
	if n != len(p.Items) || parts[0].Items[0].ContentCRC != 1 || len(parts[0].Items) != 2 {
		t.Errorf("%d readings aggregated of %d; parts %+v", n, len(p.Items), parts)
	}
	if len(SplitByWindow(pkg(8))) != 0 {
		t.Error("an empty package has parts")
	}
}

// An hour kept in panes tells the summary the whole hour tells, bit for
// bit: packages in any order, spread over any number of parts (each with
// replays), the parts merged left to right with MergeSummary, empty parts
// included; and MergeSummary is associative (the framework merges panes
// as a tree): any grouping of the parts gives the same aggregate.
func TestSummaryPanesMergeToTheWhole(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 15))
		readings := randomWindow(rng, 20+rng.IntN(300))
		whole := InitSummary(9, w0)
		parts := make([]records.SummaryAcc, 1+rng.IntN(31)) // up to an hour's 2-minute panes, and one more
		for i, off := 0, int64(1); i < len(readings); off++ {
			n := 1 + rng.IntN(40)
			p := pkg(off, readings[i:min(i+n, len(readings))]...)
			AddSummary(&whole, &p)
			k := rng.IntN(len(parts))
			if parts[k].WindowEndMs == 0 {
				parts[k] = InitSummary(9, w0)
			}
			AddSummary(&parts[k], &p)
			if rng.IntN(4) == 0 {
				AddSummary(&parts[k], &p) // a replay
			}
			i += n
		}
		merged := records.SummaryAcc{}
		for _, part := range parts {
			merged = MergeSummary("9", merged, part)
		}
		if tree := mergeAnyTree(rng, parts); !reflect.DeepEqual(tree, merged) {
			t.Fatalf("seed %d, %d parts: merged as a tree %+v\nleft to right %+v", seed, len(parts), tree, merged)
		}
		got, want := Summarize(&merged), Summarize(&whole)
		if !reflect.DeepEqual(got, want) || math.Float64bits(got.DistanceM) != math.Float64bits(want.DistanceM) {
			t.Fatalf("seed %d, %d parts: merged summary differs\n got %+v\nwant %+v", seed, len(parts), got, want)
		}
		if !slices.Equal(merged.Applied, whole.Applied) || !slices.EqualFunc(merged.Fixes, whole.Fixes, func(a, b records.Fix) bool { return records.CompareFix(a, b) == 0 }) {
			t.Fatalf("seed %d: merged fixes or identities differ from the whole hour's", seed)
		}
	}
}

// mergeAnyTree merges parts, in order, with MergeSummary as a tree split at
// random points.
func mergeAnyTree(rng *rand.Rand, parts []records.SummaryAcc) records.SummaryAcc {
	if len(parts) == 1 {
		return parts[0]
	}
	k := 1 + rng.IntN(len(parts)-1)
	return MergeSummary("9", mergeAnyTree(rng, parts[:k]), mergeAnyTree(rng, parts[k:]))
}
