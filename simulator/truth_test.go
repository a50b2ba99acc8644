package simulator

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

func TestEveryFaultAppearsWithDefaultMix(t *testing.T) {
	f := newTestFleet(t, 1, 50, DefaultFaultMix())
	codes := map[int]int{}
	for range 400 {
		codes[next(t, f).Expect.Code]++
	}
	got := f.Injected()
	for _, k := range AllFaults() {
		if got[k] == 0 {
			t.Errorf("fault %s never injected in 400 packages: %v", k, got)
		}
	}
	for _, c := range []int{202, 400, 401, 413, 422} {
		if codes[c] == 0 {
			t.Errorf("no package expects %d: %v", c, codes)
		}
	}
}

func TestNoFaults(t *testing.T) {
	f := newTestFleet(t, 3, 10, NoFaults())
	for range 200 {
		p := next(t, f)
		if len(p.Faults) != 0 || p.Expect.Code != 202 || p.Expect.Reject != protocol.ReasonNone {
			t.Fatalf("package %d: faults %v, expect %d %v", p.Seq, p.Faults, p.Expect.Code, p.Expect.Reject)
		}
		if v, d, i := p.Expect.Counts(); d != 0 || i != 0 || v == 0 {
			t.Fatalf("package %d: %d valid, %d duplicates, %d invalid", p.Seq, v, d, i)
		}
	}
}

func TestDeviceIDsAndVersions(t *testing.T) {
	f := newTestFleet(t, 5, 40, NoFaults())
	var high, v1, v2 int
	seen := map[uint64]bool{}
	for _, d := range f.Devices() {
		if d.ID == 0 || seen[d.ID] {
			t.Fatalf("device id %d zero or repeated", d.ID)
		}
		seen[d.ID] = true
		if d.ID > 1<<63 {
			high++
		}
		switch d.Version {
		case 1:
			v1++
			if d.FirmwareString() != "" {
				t.Fatalf("v1 device with firmware %q", d.FirmwareString())
			}
		case 2:
			v2++
			if d.Firmware>>8 < 2 {
				t.Fatalf("v2 device with firmware %q", d.FirmwareString())
			}
		}
	}
	if high == 0 || v1 == 0 || v2 == 0 {
		t.Fatalf("%d ids above 2^63, %d v1, %d v2 devices", high, v1, v2)
	}
}

// nextWith returns the next package of f for which ok holds.
func nextWith(t *testing.T, f *Fleet, ok func(*Package) bool) *Package {
	t.Helper()
	for range 1000 {
		if p := next(t, f); ok(p) {
			return p
		}
	}
	t.Fatal("no such package in 1000")
	return nil
}

func TestLostACKResendDoublesDuplicates(t *testing.T) {
	f := newTestFleet(t, 11, 1, FaultMix{LostACK: 1, IntraDuplicate: 1})
	p1 := next(t, f)
	valid, intra, invalid := p1.Expect.Counts()
	if valid == 0 || intra == 0 || invalid != 0 {
		t.Fatalf("first package: %d valid, %d intra-package duplicates, %d invalid", valid, intra, invalid)
	}
	resend := nextWith(t, f, func(p *Package) bool { return p.ResendOf == p1.Seq })
	if string(resend.Bytes) != string(p1.Bytes) || !resend.HasFault(FaultLostACK) {
		t.Fatal("the resend is not the same bytes, or not marked lost_ack")
	}
	l := NewLedger()
	l.Apply(p1, 202, 0)
	first := l.Truth()
	l.Apply(resend, 202, 0)
	second := l.Truth()
	if first.Totals.Messages != valid || first.Totals.Duplicates != intra {
		t.Fatalf("after the first copy: %+v, want %d messages and %d duplicates", first.Totals, valid, intra)
	}
	if second.Totals.Messages != valid || second.Totals.Duplicates != 2*intra+valid {
		t.Fatalf("after the resend: %+v, want %d messages and %d duplicates", second.Totals, valid, 2*intra+valid)
	}
	if !second.Exact() || second.Max != second.Totals {
		t.Fatalf("not exact: %+v", second)
	}
}

func TestRebatchedMessageKeepsIdentity(t *testing.T) {
	f := newTestFleet(t, 12, 1, FaultMix{Rebatch: 1})
	p1 := next(t, f)
	p2 := next(t, f)
	if !p2.HasFault(FaultRebatch) {
		t.Fatalf("second package has faults %v, want rebatch", p2.Faults)
	}
	d1, err := protocol.Decode(p1.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := protocol.Decode(p2.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if d1.Header.PackageSeq == d2.Header.PackageSeq || d1.Header.BaseTimeMs == d2.Header.BaseTimeMs {
		t.Fatalf("re-batched package has the same package_seq or base time: %+v %+v", d1.Header, d2.Header)
	}
	rebatched := 0
	for i, r := range p2.Expect.Records {
		if r.Fault != FaultRebatch {
			continue
		}
		rebatched++
		m2 := d2.Messages[slices.IndexFunc(d2.Messages, func(m protocol.Message) bool { return m.TimeMs == r.Message.TimeMs })]
		j := slices.IndexFunc(d1.Messages, func(m protocol.Message) bool { return m.TimeMs == m2.TimeMs })
		if j < 0 {
			t.Fatalf("re-batched record %d (time %d) not in the first package", i, m2.TimeMs)
		}
		m1 := d1.Messages[j]
		if m1.ContentCRC != m2.ContentCRC || m1.TimeMs != m2.TimeMs || m1.Type != m2.Type {
			t.Fatalf("identities differ: %+v vs %+v", m1, m2)
		}
		if m1.OffsetMs == m2.OffsetMs || m1.CRC == m2.CRC {
			t.Fatalf("offset or record CRC equal: %+v vs %+v", m1, m2)
		}
		if m2.ContentCRC != r.Message.ContentCRC || m2.CRC != r.Message.CRC {
			t.Fatalf("expect has CRC %#x content %#x, decoder %#x %#x", r.Message.CRC, r.Message.ContentCRC, m2.CRC, m2.ContentCRC)
		}
	}
	if rebatched == 0 {
		t.Fatal("no re-batched record")
	}
	l := NewLedger()
	l.Apply(p1, 202, 0)
	l.Apply(p2, 202, 0)
	v1, _, _ := p1.Expect.Counts()
	v2, _, _ := p2.Expect.Counts()
	tr := l.Truth()
	if tr.Totals.Duplicates != rebatched || tr.Totals.Messages != v1+v2-rebatched {
		t.Fatalf("totals %+v, want %d duplicates and %d messages", tr.Totals, rebatched, v1+v2-rebatched)
	}
}

func TestValidationFailureCountsEveryTime(t *testing.T) {
	f := newTestFleet(t, 13, 1, FaultMix{LostACK: 1, OutOfRange: 1, Future: 1, BadRecord: 1})
	p1 := next(t, f)
	resend := nextWith(t, f, func(p *Package) bool { return p.ResendOf == p1.Seq })
	_, _, invalid := p1.Expect.Counts()
	reasons := map[string]int{}
	for _, r := range p1.Expect.Records {
		if r.Outcome == OutcomeInvalid {
			reasons[r.Reason.String()]++
		}
	}
	if reasons["out_of_range"] != 1 || reasons["future_timestamp"] != 1 || invalid != 3 {
		t.Fatalf("first package's invalid records: %v", reasons)
	}
	l := NewLedger()
	l.Apply(p1, 202, 0)
	l.Apply(resend, 202, 0)
	tr := l.Truth()
	if tr.Totals.Invalid != 2*invalid || tr.Totals.DeadLetters != 2*invalid {
		t.Fatalf("totals %+v, want %d invalid", tr.Totals, 2*invalid)
	}
	for r, n := range reasons {
		if tr.DeadLetters[r] != 2*n {
			t.Fatalf("dead letters %v, want twice %v", tr.DeadLetters, reasons)
		}
	}
	d := tr.Devices[p1.Device]
	if d.Invalid != 2*invalid {
		t.Fatalf("device invalid %d, want %d", d.Invalid, 2*invalid)
	}
}

func TestLateMessageDoesNotMoveLatestBack(t *testing.T) {
	f := newTestFleet(t, 14, 1, NoFaults())
	p1 := next(t, f)
	l := NewLedger()
	l.Apply(p1, 202, 0)
	before := l.Truth().Devices[p1.Device]
	if before.LastSeenMs == 0 || len(before.Latest) == 0 {
		t.Fatalf("nothing stored: %+v", before)
	}
	// A package with a single late message of a type already seen.
	d := f.devices[0]
	var typ protocol.MsgType
	for typ = range before.Latest {
		break
	}
	lateT := d.lateTime(f.rng)
	if lateT >= before.Latest[typ].TimeMs {
		t.Fatalf("late time %d not older than latest %d", lateT, before.Latest[typ].TimeMs)
	}
	r, err := messageRec(d.Version, lateT, d.messageOf(f.rng, typ, lateT), FaultLate)
	if err != nil {
		t.Fatal(err)
	}
	late := f.assemble(d, f.header(d, lateT, 1), []rec{r}, nowMs(f.cfg.Now))
	checkAgainstDecoder(t, late)
	l.Apply(late, 202, 0)
	after := l.Truth().Devices[p1.Device]
	if after.Messages != before.Messages+1 {
		t.Fatalf("late message not stored: %d -> %d", before.Messages, after.Messages)
	}
	if after.LastSeenMs != before.LastSeenMs || after.Latest[typ] != before.Latest[typ] {
		t.Fatalf("late message moved state back: last_seen %d -> %d, latest %v -> %v",
			before.LastSeenMs, after.LastSeenMs, before.Latest[typ].TimeMs, after.Latest[typ].TimeMs)
	}
	// And the fleet's own late messages are older than what the device
	// sent before them.
	g := newTestFleet(t, 15, 1, FaultMix{Late: 1})
	var newest uint64
	lates := 0
	for range 20 {
		p := next(t, g)
		for _, r := range p.Expect.Records {
			if r.Fault != FaultLate {
				newest = max(newest, r.Message.TimeMs)
			}
		}
		for _, r := range p.Expect.Records {
			if r.Fault == FaultLate {
				lates++
				if r.Outcome != OutcomeValid || r.Message.TimeMs >= newest {
					t.Fatalf("late record %+v, device newest %d", r, newest)
				}
			}
		}
	}
	if lates == 0 {
		t.Fatal("no late message in 20 packages")
	}
}

func TestLedgerAnswers(t *testing.T) {
	f := newTestFleet(t, 16, 3, NoFaults())
	p := next(t, f)
	valid, _, _ := p.Expect.Counts()
	l := NewLedger()
	for _, code := range []int{400, 401, 413} {
		l.Apply(p, code, 0)
	}
	if tr := l.Truth(); len(tr.Devices) != 0 || tr.Totals != (Counts{}) || tr.Unexpected != 3 {
		t.Fatalf("4xx kept something: %+v", tr)
	}
	l.Apply(p, 422, 0)
	tr := l.Truth()
	if tr.Totals.PackagesRejected != 1 || tr.DeadLetters["unknown"] != 1 || tr.Devices[p.Device].PackagesRejected != 1 {
		t.Fatalf("422: %+v", tr)
	}
	// Two uncertain attempts before a 202: up to two more copies.
	l = NewLedger()
	l.Apply(p, 202, 2)
	tr = l.Truth()
	if tr.Exact() || tr.Uncertain != 2 || tr.Totals.Messages != valid || tr.Max.Messages != valid || tr.Max.Duplicates != 2*valid {
		t.Fatalf("uncertain 202: %+v", tr)
	}
	// An unsent package with an uncertain attempt may have been stored.
	l = NewLedger()
	l.Unsent(p, 1)
	tr = l.Truth()
	if tr.Totals.Messages != 0 || tr.Max.Messages != valid || tr.Unsent != 1 || tr.Devices[p.Device].Uncertain != 1 {
		t.Fatalf("uncertain unsent: %+v", tr)
	}
	// Truth is a deep copy.
	tr.Devices[p.Device].Stored[Identity{}] = StoredMessage{}
	if _, ok := l.Truth().Devices[p.Device].Stored[Identity{}]; ok {
		t.Fatal("Truth shares its maps with the ledger")
	}
}

func TestContentCRCMatchesDecoder(t *testing.T) {
	f := newTestFleet(t, 17, 5, FaultMix{Rebatch: 0.5})
	for range 50 {
		p := next(t, f)
		d, err := protocol.Decode(p.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range d.Messages {
			if m.ContentCRC == m.CRC && m.OffsetMs != 0 {
				t.Fatalf("content CRC equals record CRC: %+v", m)
			}
		}
	}
}

func TestPruningLedger(t *testing.T) {
	f := newTestFleet(t, 18, 1, NoFaults())
	l := NewPruningLedger(time.Millisecond)
	keep := NewLedger()
	for range 200 {
		p := next(t, f)
		l.Apply(p, 202, 0)
		keep.Apply(p, 202, 0)
	}
	a, b := l.Truth(), keep.Truth()
	if a.Totals != b.Totals {
		t.Fatalf("pruning changed the totals: %+v vs %+v", a.Totals, b.Totals)
	}
	for id, d := range a.Devices {
		if d.Forgotten == 0 || len(d.Stored)+d.Forgotten != d.Messages || d.LastSeenMs != b.Devices[id].LastSeenMs {
			t.Fatalf("device %d: %d stored, %d forgotten, %d messages", id, len(d.Stored), d.Forgotten, d.Messages)
		}
	}
}

func TestSummaryJSON(t *testing.T) {
	f := newTestFleet(t, 19, 2, FaultMix{OutOfRange: 1})
	l := NewLedger()
	l.Apply(next(t, f), 202, 0)
	l.Attempt(503)
	b, err := json.Marshal(l.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"exact", "packages_sent", "packages_unsent", "uncertain_attempts", "unexpected_answers",
		"devices", "messages", "duplicates", "invalid", "packages_rejected", "dead_letters", "max", "answers",
		"attempts", "dead_letters_by_reason", "faults"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary JSON lacks %q: %s", k, b)
		}
	}
	if m["dead_letters_by_reason"].(map[string]any)["out_of_range"] != 1.0 || m["answers"].(map[string]any)["202"] != 1.0 {
		t.Errorf("summary JSON %s", b)
	}
}

func TestReadingNormal(t *testing.T) {
	r := Reading{Message: protocol.Message{Type: protocol.TypeGPS, LatE7: 523_456_789, LonE7: -1_234_567, SpeedDkmh: 1234, HeadingDeg: 90, HdopD: 12, Satellites: 9}}
	n := r.Normal()
	if n["lat_deg"] != 52.3456789 || n["lon_deg"] != -0.1234567 || n["speed_kmh"] != 123.4 || n["hdop"] != 1.2 || n["satellites"] != 9 {
		t.Fatalf("gps %v", n)
	}
	r = Reading{Message: protocol.Message{Type: protocol.TypeEngine, RPM: 3000, CoolantRaw: 165, FuelPct: 40}}
	if n := r.Normal(); n["coolant_c"] != 125 || n["rpm"] != 3000 {
		t.Fatalf("engine %v", n)
	}
	r = Reading{Message: protocol.Message{Type: protocol.TypeBattery, Millivolts: 12650}}
	if n := r.Normal(); n["battery_v"] != 12.65 {
		t.Fatalf("battery %v", n)
	}
}

// TestLedgerOfferedAndPossible: every package counts as offered by its
// expected answer, accepted ones as such; the messages of a package whose
// fate stayed uncertain are possible rows until a later copy stores them.
func TestLedgerOfferedAndPossible(t *testing.T) {
	f := newTestFleet(t, 17, 3, NoFaults())
	p, q := next(t, f), next(t, f)
	valid, _, _ := p.Expect.Counts()
	l := NewLedger()
	l.Apply(p, 400, 0) // unexpected
	l.Unsent(q, 1)     // given up after an uncertain attempt
	tr := l.Truth()
	if tr.Offered[202] != 2 || tr.AsExpected[202] != 0 {
		t.Fatalf("offered %v, as expected %v; want 2 offered, none accepted", tr.Offered, tr.AsExpected)
	}
	dq := tr.Devices[q.Device]
	qValid, _, _ := q.Expect.Counts()
	if dq == nil || len(dq.Possible) != qValid || len(dq.Stored) != 0 {
		t.Fatalf("uncertain unsent package: device truth %+v, want %d possible messages", dq, qValid)
	}
	l.Apply(p, 202, 0)
	l.Apply(q, 202, 0) // the resend stores what was only possible
	tr = l.Truth()
	if tr.Offered[202] != 4 || tr.AsExpected[202] != 2 {
		t.Fatalf("offered %v, as expected %v; want 4 offered, 2 accepted", tr.Offered, tr.AsExpected)
	}
	if d := tr.Devices[q.Device]; len(d.Possible) != 0 {
		t.Fatalf("stored messages are still possible: %d", len(d.Possible))
	}
	if d := tr.Devices[p.Device]; len(d.Stored) < valid {
		t.Fatalf("device of p stores %d messages, want at least %d", len(d.Stored), valid)
	}
}
