package records

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDedupeEntryRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 0; n < 50; n++ {
		var e DedupeEntry
		e.UpdatedMs = rng.Int64()
		for i := rng.IntN(200); i > 0; i-- {
			e.Add(rng.Uint64N(1 << 52))
		}
		for i := rng.IntN(5); i > 0; i-- {
			e.Buckets = append(e.Buckets, rng.Int64N(1<<40)-(1<<39))
		}
		slices.Sort(e.Buckets)
		b, err := DedupeEntryCodec{}.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DedupeEntryCodec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.UpdatedMs != e.UpdatedMs || !slices.Equal(got.IDs, e.IDs) || !slices.Equal(got.Buckets, e.Buckets) {
			t.Fatalf("round trip: got %+v, want %+v", got, e)
		}
		for _, id := range e.IDs {
			if !got.Seen(id) {
				t.Fatalf("Seen(%d) false after round trip", id)
			}
		}
	}
}

func TestDedupeEntryAdd(t *testing.T) {
	var e DedupeEntry
	for _, id := range []uint64{5, 1, 9, 5, 1} {
		e.Add(id)
	}
	if !slices.Equal(e.IDs, []uint64{1, 5, 9}) {
		t.Fatalf("IDs = %v", e.IDs)
	}
	if e.Add(9) || !e.Add(7) || e.Seen(8) || !e.Seen(7) {
		t.Fatal("Add/Seen disagree")
	}
}

func TestDedupeEntryRejects(t *testing.T) {
	if _, err := (DedupeEntryCodec{}).Encode(DedupeEntry{IDs: []uint64{3, 3}}); err == nil {
		t.Error("encoded repeated ids")
	}
	for _, b := range [][]byte{nil, {2}, {1, 0, 5}, {1, 0, 0, 2, 1, 0}} {
		if _, err := (DedupeEntryCodec{}).Decode(b); err == nil {
			t.Errorf("decoded %x", b)
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Errorf("decode %x: %v wraps neither ErrCorrupt nor ErrVersion", b, err)
		}
	}
}

// A bucket of 600 messages (one a second for ten minutes) stays small.
func TestDedupeEntrySize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var e DedupeEntry
	for i := 0; i < 600; i++ {
		e.Add(uint64(i*1000)<<32 | uint64(rng.Uint32()))
	}
	b, _ := DedupeEntryCodec{}.Encode(e)
	if len(b) > 600*8 {
		t.Errorf("600 identities take %d bytes", len(b))
	}
	t.Logf("600 identities: %d bytes (%.1f per message)", len(b), float64(len(b))/600)
}

func FuzzDedupeEntryDecode(f *testing.F) {
	b, _ := DedupeEntryCodec{}.Encode(DedupeEntry{UpdatedMs: 5, Buckets: []int64{1, 2}, IDs: []uint64{3, 9}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DedupeEntryCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, err := DedupeEntryCodec{}.Encode(e)
		if err != nil {
			t.Fatalf("decoded entry does not re-encode: %v", err)
		}
		back, err := DedupeEntryCodec{}.Decode(again)
		if err != nil || !slices.Equal(back.IDs, e.IDs) || !slices.Equal(back.Buckets, e.Buckets) {
			t.Fatalf("re-encoded entry differs")
		}
	})
}
