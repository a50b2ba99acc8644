package records

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// appliedModel is AppliedPackages' rule written plainly: every identity in
// the order added, forgetting from the front.
type appliedModel struct {
	entries []packageEntry
	newest  int64
}

func (m *appliedModel) add(raw, part, receivedMs int64, horizon time.Duration) {
	if len(m.entries) == 0 {
		m.newest = receivedMs
	}
	m.entries = append(m.entries, packageEntry{raw, part, floorDiv(receivedMs, 1000)})
	m.newest = max(m.newest, receivedMs)
	oldest := floorDiv(m.newest-horizon.Milliseconds(), 1000)
	for len(m.entries) > AppliedLimit && (len(m.entries) > PackagesLimit || m.entries[0].sec < oldest) {
		m.entries = m.entries[1:]
	}
}

func (m *appliedModel) contains(raw, part int64) bool {
	return slices.ContainsFunc(m.entries, func(e packageEntry) bool { return e.raw == raw && e.part == part })
}

// AppliedPackages keeps what the plain rule keeps, through encodings, with
// packages out of raw order, parts of every kind, receive times going back
// and gaps beyond the horizon.
func TestAppliedPackagesFollowsTheRule(t *testing.T) {
	const horizon = 10 * time.Minute
	r := rand.New(rand.NewPCG(13, 4))
	var st DeviceState
	var m appliedModel
	raw, at := int64(1000), int64(1_700_000_000_000)
	for i := range 6000 {
		switch n := r.IntN(100); {
		case n < 2:
			at += 15 * 60_000 // a gap beyond the horizon
		case n < 5:
			at -= r.Int64N(5000) // another edge's clock
		default:
			at += r.Int64N(700)
		}
		raw += 1 + r.Int64N(300)
		id := packageEntry{raw: raw - r.Int64N(3)*r.Int64N(400), part: []int64{-1, 2_833_000, 2_833_001}[r.IntN(3)]}
		if got, want := st.PackageApplied(id.raw, id.part), m.contains(id.raw, id.part); got != want {
			t.Fatalf("step %d: %+v applied %v, want %v", i, id, got, want)
		}
		if !m.contains(id.raw, id.part) {
			st.MarkPackage(id.raw, id.part, at, horizon)
			m.add(id.raw, id.part, at, horizon)
		}
		if i%97 == 0 {
			b, err := DeviceStateCodec{}.Encode(st)
			if err != nil {
				t.Fatal(err)
			}
			if st, err = (DeviceStateCodec{}).Decode(b); err != nil {
				t.Fatal(err)
			}
		}
		if st.Packages.Len() != len(m.entries) {
			t.Fatalf("step %d: %d kept, want %d", i, st.Packages.Len(), len(m.entries))
		}
	}
	for _, e := range m.entries {
		if !st.PackageApplied(e.raw, e.part) {
			t.Fatalf("%+v forgotten", e)
		}
	}
}

// A copy is recognised within the horizon after its package, up to
// PackagesLimit later packages; later than the horizon, or beyond the
// limit, it is not (it would be counted twice). At least AppliedLimit are
// kept whatever their age.
func TestAppliedPackagesHorizonAndLimit(t *testing.T) {
	const horizon = 30 * time.Minute
	var slow DeviceState // one package a second
	for i := range int64(3600) {
		slow.MarkPackage(i+1, -1, i*1000, horizon)
	}
	newest := int64(3599 * 1000)
	for _, c := range []struct {
		raw  int64
		want bool
	}{
		{1, false}, {int64(3600 - 31*60), false}, {int64(3600 - 29*60), true}, {3600, true},
	} {
		if got := slow.PackageApplied(c.raw, -1); got != c.want {
			t.Errorf("one a second: package received %d s before the newest applied %v, want %v", (newest-(c.raw-1)*1000)/1000, got, c.want)
		}
	}
	var fast DeviceState // ten a second: the limit first
	for i := range int64(3 * PackagesLimit) {
		fast.MarkPackage(i+1, 7, i*100, horizon)
	}
	if fast.Packages.Len() != PackagesLimit || fast.PackageApplied(PackagesLimit, 7) || !fast.PackageApplied(2*PackagesLimit+1, 7) {
		t.Errorf("ten a second: %d kept, want the newest %d", fast.Packages.Len(), PackagesLimit)
	}
	var rare DeviceState // a package a day
	for i := range int64(AppliedLimit + 5) {
		rare.MarkPackage(i+1, -1, i*86_400_000, horizon)
	}
	if rare.Packages.Len() != AppliedLimit || rare.PackageApplied(5, -1) || !rare.PackageApplied(6, -1) {
		t.Errorf("a day apart: %d kept, want the last %d", rare.Packages.Len(), AppliedLimit)
	}
	b, _ := DeviceStateCodec{}.Encode(fast)
	t.Logf("a state with %d applied packages (ten a second) takes %d bytes", fast.Packages.Len(), len(b))
}
