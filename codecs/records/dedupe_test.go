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
		off := rng.Int64N(1 << 40)
		for i := rng.IntN(200); i > 0; i-- {
			if rng.IntN(8) == 0 {
				off += rng.Int64N(1000) - 10
			}
			if n%5 == 0 {
				e.Add(rng.Uint64N(1 << 52))
			} else {
				e.Store(rng.Uint64N(1<<52), off)
			}
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
			want, _ := e.Lookup(id)
			if o, ok := got.Lookup(id); !ok || o != want || !got.Seen(id) {
				t.Fatalf("Lookup(%d) = %d, %v after round trip, want %d", id, o, ok, want)
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

// Store keeps the offset an identity was first stored with; Add stores an
// unknown one, beside known ones.
func TestDedupeEntryStore(t *testing.T) {
	var e DedupeEntry
	e.Add(5)
	if !e.Store(9, 100) || e.Store(9, 200) || !e.Store(1, 200) {
		t.Fatal("Store reports wrongly")
	}
	for id, want := range map[uint64]int64{1: 200, 5: 0, 9: 100} {
		if o, ok := e.Lookup(id); !ok || o != want {
			t.Errorf("Lookup(%d) = %d, %v, want %d", id, o, ok, want)
		}
	}
	if _, ok := e.Lookup(7); ok {
		t.Error("Lookup found an absent id")
	}
	if _, err := (DedupeEntryCodec{}).Encode(DedupeEntry{IDs: []uint64{1, 2}, Offsets: []int64{3}}); err == nil {
		t.Error("encoded an entry with fewer offsets than ids")
	}
}

// A version 1 entry still decodes, its offsets unknown.
func TestDedupeEntryDecodesVersion1(t *testing.T) {
	// Version 1, updated 5, buckets [1, 2], ids [3, 9].
	e, err := DedupeEntryCodec{}.Decode([]byte{1, 10, 2, 2, 2, 2, 3, 6})
	if err != nil {
		t.Fatal(err)
	}
	if e.UpdatedMs != 5 || !slices.Equal(e.Buckets, []int64{1, 2}) || !slices.Equal(e.IDs, []uint64{3, 9}) || e.Offsets != nil {
		t.Fatalf("decoded %+v", e)
	}
	if o, ok := e.Lookup(9); !ok || o != 0 {
		t.Errorf("Lookup(9) = %d, %v", o, ok)
	}
}

func TestDedupeEntryRejects(t *testing.T) {
	if _, err := (DedupeEntryCodec{}).Encode(DedupeEntry{IDs: []uint64{3, 3}}); err == nil {
		t.Error("encoded repeated ids")
	}
	for _, b := range [][]byte{nil, {3}, {1, 0, 5}, {1, 0, 0, 2, 1, 0},
		{2, 0, 0, 1, 3},                // no offset runs
		{2, 0, 0, 1, 3, 1, 2, 2},       // runs longer than the ids
		{2, 0, 0, 0, 1, 2, 1},          // a run without ids
		{2, 0, 0, 2, 3, 1, 2, 2, 2, 0}, // an empty run
	} {
		if _, err := (DedupeEntryCodec{}).Decode(b); err == nil {
			t.Errorf("decoded %x", b)
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Errorf("decode %x: %v wraps neither ErrCorrupt nor ErrVersion", b, err)
		}
	}
}

// A bucket of 600 messages (one a second for ten minutes, in 15 packages
// of 40 whose raw offsets are apart by the other devices' records) stays
// small, with and without the offsets.
func TestDedupeEntrySize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var with, without DedupeEntry
	off := int64(48_000_000)
	for i := 0; i < 600; i++ {
		if i%40 == 0 {
			off += 1 + rng.Int64N(2000)
		}
		id := uint64(i*1000)<<32 | uint64(rng.Uint32())
		with.Store(id, off)
		without.Add(id)
	}
	b, _ := DedupeEntryCodec{}.Encode(with)
	b0, _ := DedupeEntryCodec{}.Encode(without)
	if len(b) > 600*8 {
		t.Errorf("600 identities take %d bytes", len(b))
	}
	t.Logf("600 identities: %d bytes (%.2f per message) with offsets, %d (%.2f) without", len(b), float64(len(b))/600, len(b0), float64(len(b0))/600)
}

func FuzzDedupeEntryDecode(f *testing.F) {
	b, _ := DedupeEntryCodec{}.Encode(DedupeEntry{UpdatedMs: 5, Buckets: []int64{1, 2}, IDs: []uint64{3, 9}, Offsets: []int64{7, 8}})
	f.Add(b)
	f.Add([]byte{1, 10, 2, 2, 2, 2, 3, 6})
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
		if err != nil || !slices.Equal(back.IDs, e.IDs) || !slices.Equal(back.Buckets, e.Buckets) || !slices.Equal(back.Offsets, e.Offsets) && e.Offsets != nil {
			t.Fatalf("re-encoded entry differs")
		}
	})
}
