package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// errUnsorted is returned when encoding a DedupeEntry whose IDs are not
// strictly ascending: the delta encoding could not represent them.
var errUnsorted = errors.New("records: dedupe entry ids not strictly ascending")

// DedupeEntry is a value of the dedupe stage's group table. The table holds
// two kinds of keys: under a device key, the device's index of live time
// buckets (Buckets); under a device-and-bucket key, the identities of the
// messages already seen in that bucket (IDs).
type DedupeEntry struct {
	// UpdatedMs is the wall-clock time of the last write, Unix ms.
	UpdatedMs int64
	// Buckets lists the device's live bucket numbers, ascending.
	Buckets []int64
	// IDs lists the identities seen in the bucket, ascending. An identity
	// is the message's time offset within its bucket in the high 32 bits and
	// its content CRC in the low 32 bits.
	IDs []uint64
	// Offsets, when not nil, runs parallel to IDs: the raw-topic offset of
	// the package that first stored each identity (0: unknown), so that a
	// replay of that package is told from a resend (format version 2). Nil
	// means every offset is unknown, as in a version 1 entry.
	Offsets []int64
}

// dedupeVersion is the newest DedupeEntry format.
//
// Version 1: version byte, UpdatedMs (varint), bucket count (uvarint) and
// the buckets as varint deltas from the previous one (the first from 0),
// ID count (uvarint) and the IDs as uvarint deltas. Sorted deltas keep a
// bucket of 600 identities near 3.6 KB.
//
// Version 2 appends the Offsets as runs of equal offsets, since a
// package's messages are stored together and mostly sit next to each other
// in time: run count (uvarint), and per run its offset as a varint delta
// from the previous run's (the first from 0) and its length (uvarint); the
// lengths add up to the ID count. A bucket of 600 identities from 15
// packages takes about 50 more bytes. Version 1 is still read (Offsets then
// is nil).
const dedupeVersion = 2

// DedupeEntryCodec encodes and decodes DedupeEntry values. It implements
// codecs.Codec[DedupeEntry].
type DedupeEntryCodec struct{}

// Encode returns the record bytes of e. Buckets and IDs must be ascending.
func (DedupeEntryCodec) Encode(e DedupeEntry) ([]byte, error) {
	if e.Offsets != nil && len(e.Offsets) != len(e.IDs) {
		return nil, fmt.Errorf("records: dedupe entry has %d offsets for %d ids", len(e.Offsets), len(e.IDs))
	}
	b := make([]byte, 0, 16+len(e.Buckets)*2+len(e.IDs)*5)
	b = append(b, dedupeVersion)
	b = binary.AppendVarint(b, e.UpdatedMs)
	b = binary.AppendUvarint(b, uint64(len(e.Buckets)))
	var prev int64
	for _, v := range e.Buckets {
		b = binary.AppendVarint(b, v-prev)
		prev = v
	}
	b = binary.AppendUvarint(b, uint64(len(e.IDs)))
	var prevID uint64
	for i, id := range e.IDs {
		if i > 0 && id <= prevID {
			return nil, errUnsorted
		}
		b = binary.AppendUvarint(b, id-prevID)
		prevID = id
	}
	return appendOffsetRuns(b, e.Offsets, len(e.IDs)), nil
}

// appendOffsetRuns appends n offsets (all 0 when offs is nil) as runs.
func appendOffsetRuns(b []byte, offs []int64, n int) []byte {
	if n == 0 {
		return append(b, 0)
	}
	if offs == nil {
		b = binary.AppendUvarint(b, 1)
		b = binary.AppendVarint(b, 0)
		return binary.AppendUvarint(b, uint64(n))
	}
	runs := 1
	for i := 1; i < n; i++ {
		if offs[i] != offs[i-1] {
			runs++
		}
	}
	b = binary.AppendUvarint(b, uint64(runs))
	var prev int64
	for i := 0; i < n; {
		j := i + 1
		for j < n && offs[j] == offs[i] {
			j++
		}
		b = binary.AppendVarint(b, offs[i]-prev)
		b = binary.AppendUvarint(b, uint64(j-i))
		prev = offs[i]
		i = j
	}
	return b
}

// Decode parses record bytes written by any version of Encode.
func (DedupeEntryCodec) Decode(b []byte) (DedupeEntry, error) {
	var e DedupeEntry
	r := reader{b: b}
	v := r.version("dedupe entry", dedupeVersion)
	e.UpdatedMs = r.varint("updated")
	if n := r.length("bucket count", 1); n > 0 {
		e.Buckets = make([]int64, n)
		var prev int64
		for i := range e.Buckets {
			prev += r.varint("bucket")
			e.Buckets[i] = prev
		}
	}
	if n := r.length("id count", 1); n > 0 {
		e.IDs = make([]uint64, n)
		var prev uint64
		for i := range e.IDs {
			d := r.uvarint("id")
			if i > 0 && d == 0 {
				r.fail("repeated id")
			}
			prev += d
			e.IDs[i] = prev
		}
	}
	if v >= 2 {
		e.Offsets = r.offsetRuns(len(e.IDs))
	}
	if err := r.finish("dedupe entry"); err != nil {
		return DedupeEntry{}, err
	}
	return e, nil
}

// offsetRuns reads what appendOffsetRuns wrote for n offsets; nil when n
// is 0.
func (r *reader) offsetRuns(n int) []int64 {
	runs := r.length("offset run count", 2)
	if r.err != nil {
		return nil
	}
	if (n == 0) != (runs == 0) || runs > n {
		r.fail("offset run count")
		return nil
	}
	if n == 0 {
		return nil
	}
	offs := make([]int64, 0, n)
	var prev int64
	for range runs {
		prev += r.varint("offset")
		k := r.uvarint("offset run")
		if r.err != nil {
			return nil
		}
		if k == 0 || k > uint64(n-len(offs)) {
			r.fail("offset run")
			return nil
		}
		for range k {
			offs = append(offs, prev)
		}
	}
	if len(offs) != n {
		r.fail("offset runs")
		return nil
	}
	return offs
}

// Seen reports whether id is in e.IDs.
func (e *DedupeEntry) Seen(id uint64) bool {
	_, ok := slices.BinarySearch(e.IDs, id)
	return ok
}

// Add inserts id into e.IDs, keeping them sorted, with an unknown raw
// offset, and reports whether it was new.
func (e *DedupeEntry) Add(id uint64) bool { return e.Store(id, 0) }

// Store inserts id into e.IDs, keeping them sorted, as stored by the
// package at rawOffset (0: unknown), and reports whether it was new. A
// present id keeps the offset it was first stored with.
func (e *DedupeEntry) Store(id uint64, rawOffset int64) bool {
	i, ok := slices.BinarySearch(e.IDs, id)
	if ok {
		return false
	}
	if e.Offsets == nil && rawOffset != 0 {
		e.Offsets = make([]int64, len(e.IDs), len(e.IDs)+1)
	}
	e.IDs = slices.Insert(e.IDs, i, id)
	if e.Offsets != nil {
		e.Offsets = slices.Insert(e.Offsets, i, rawOffset)
	}
	return true
}

// Lookup reports whether id is in e.IDs and the raw offset of the package
// that stored it (0: unknown).
func (e *DedupeEntry) Lookup(id uint64) (rawOffset int64, ok bool) {
	i, ok := slices.BinarySearch(e.IDs, id)
	if !ok {
		return 0, false
	}
	if i < len(e.Offsets) {
		return e.Offsets[i], true
	}
	return 0, true
}
