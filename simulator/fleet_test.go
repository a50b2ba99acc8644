package simulator

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/edge"
)

// frozen returns a clock that always says t.
func frozen(t time.Time) func() time.Time { return func() time.Time { return t } }

var testNow = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func newTestFleet(t *testing.T, seed int64, devices int, mix FaultMix) *Fleet {
	t.Helper()
	f, err := NewFleet(FleetConfig{Seed: seed, Devices: devices, Secret: []byte("s3cret"), Faults: mix, Now: frozen(testNow)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func next(t *testing.T, f *Fleet) *Package {
	t.Helper()
	p, err := f.Next()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkAgainstDecoder decodes p with codecs/protocol and checks that the
// package's Expect agrees with the decoder: the same rejection, or the same
// kept messages, intra-package duplicates and rejected records.
func checkAgainstDecoder(t *testing.T, p *Package) {
	t.Helper()
	got, err := protocol.Decode(p.Bytes)
	e := &p.Expect
	if e.Code == 400 || e.Code == 413 || e.Code == 422 || e.Reject != protocol.ReasonNone {
		var pe *protocol.PackageError
		if !errors.As(err, &pe) {
			t.Fatalf("package %d %v: decoded without error, want reject %v", p.Seq, p.Faults, e.Reject)
		}
		if pe.Reason != e.Reject {
			t.Fatalf("package %d %v: decoder says %v, want %v", p.Seq, p.Faults, pe.Reason, e.Reject)
		}
		wantCheck := map[int][2]int{400: {1, 2}, 413: {4, 4}, 422: {3, 4}, 202: {5, 6}}[e.Code]
		if e.Code != 401 && (pe.Check < wantCheck[0] || pe.Check > wantCheck[1]) {
			t.Fatalf("package %d %v: check %d, want %v for answer %d", p.Seq, p.Faults, pe.Check, wantCheck, e.Code)
		}
		if pe.HeaderTrusted() && got == nil {
			h, _ := protocol.CheckHeader(p.Bytes)
			if e.Code != 400 && h.DeviceID != e.Device && pe.Reason != protocol.ReasonTooLarge {
				t.Fatalf("package %d: header device %d, expected %d", p.Seq, h.DeviceID, e.Device)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("package %d %v: %v", p.Seq, p.Faults, err)
	}
	if got.Header.DeviceID != e.Device || got.Header.PackageSeq != e.PackageSeq || got.Header.BaseTimeMs != e.BaseTimeMs {
		t.Fatalf("package %d: header %+v, expect %+v", p.Seq, got.Header, e)
	}
	var kept []protocol.Message
	var rejected []protocol.RecordRejection
	dups := 0
	for _, r := range e.Records {
		switch {
		case r.Outcome == OutcomeDuplicate:
			dups++
		case r.HasMessage:
			kept = append(kept, r.Message)
		default:
			rejected = append(rejected, protocol.RecordRejection{Index: r.Index, Reason: r.Reason})
		}
	}
	if dups != got.IntraPackageDuplicates {
		t.Fatalf("package %d %v: %d intra-package duplicates, decoder %d", p.Seq, p.Faults, dups, got.IntraPackageDuplicates)
	}
	if len(rejected) != len(got.Rejected) {
		t.Fatalf("package %d %v: rejected %v, decoder %v", p.Seq, p.Faults, rejected, got.Rejected)
	}
	for i := range rejected {
		if rejected[i] != got.Rejected[i] {
			t.Fatalf("package %d %v: rejected %v, decoder %v", p.Seq, p.Faults, rejected, got.Rejected)
		}
	}
	if len(kept) != len(got.Messages) {
		t.Fatalf("package %d %v: %d kept, decoder %d", p.Seq, p.Faults, len(kept), len(got.Messages))
	}
	for i := range kept {
		if kept[i] != got.Messages[i] {
			t.Fatalf("package %d %v message %d:\n got  %+v\n want %+v", p.Seq, p.Faults, i, got.Messages[i], kept[i])
		}
	}
}

func TestFleetAgreesWithDecoder(t *testing.T) {
	f := newTestFleet(t, 7, 20, DefaultFaultMix())
	for range 1000 {
		checkAgainstDecoder(t, next(t, f))
	}
}

func TestFleetDeterministic(t *testing.T) {
	a := newTestFleet(t, 42, 30, DefaultFaultMix())
	b := newTestFleet(t, 42, 30, DefaultFaultMix())
	c := newTestFleet(t, 43, 30, DefaultFaultMix())
	differ := false
	for i := range 300 {
		pa, pb, pc := next(t, a), next(t, b), next(t, c)
		if !bytes.Equal(pa.Bytes, pb.Bytes) || pa.Token != pb.Token || pa.Device != pb.Device {
			t.Fatalf("package %d differs between equal seeds", i)
		}
		if !bytes.Equal(pa.Bytes, pc.Bytes) {
			differ = true
		}
	}
	if !differ {
		t.Fatal("seeds 42 and 43 generated the same packages")
	}
}

// The fleet sends version 1 tokens by default and version 2 tokens, valid
// for TokenTTL from the fleet's clock, when asked; wrong-token faults stay
// wrong in either version.
func TestFleetTokenVersions(t *testing.T) {
	secret := []byte("s3cret")
	for _, version := range []int{0, 1, 2} {
		f, err := NewFleet(FleetConfig{Seed: 3, Devices: 20, Secret: secret, Faults: FaultMix{WrongToken: 0.3},
			Now: frozen(testNow), TokenVersion: version, TokenTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		wrong := 0
		for range 200 {
			p := next(t, f)
			want := Token(secret, p.Device)
			if version == 2 {
				want, err = edge.TokenV2(secret, p.Device, testNow.Add(time.Hour), 0)
				if err != nil {
					t.Fatal(err)
				}
			}
			if p.Expect.Code == 401 {
				wrong++
				if p.Token == want {
					t.Fatalf("version %d: a wrong-token fault carries the device's token", version)
				}
				continue
			}
			if p.Expect.Device == p.Device && p.Token != want {
				t.Fatalf("version %d: device %d sends %q, want %q", version, p.Device, p.Token, want)
			}
		}
		if wrong == 0 {
			t.Errorf("version %d: no wrong-token fault in 200 packages", version)
		}
	}
	if _, err := NewFleet(FleetConfig{Secret: secret, TokenVersion: 3}); err == nil {
		t.Error("token version 3 accepted")
	}
}
