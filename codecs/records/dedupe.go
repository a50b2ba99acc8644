package records

import (
	"encoding/binary"
	"errors"
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
}

// dedupeVersion is the newest DedupeEntry format.
//
// Version 1: version byte, UpdatedMs (varint), bucket count (uvarint) and
// the buckets as varint deltas from the previous one (the first from 0),
// ID count (uvarint) and the IDs as uvarint deltas. Sorted deltas keep a
// bucket of 600 identities near 3 KB.
const dedupeVersion = 1

// DedupeEntryCodec encodes and decodes DedupeEntry values. It implements
// codecs.Codec[DedupeEntry].
type DedupeEntryCodec struct{}

// Encode returns the record bytes of e. Buckets and IDs must be ascending.
func (DedupeEntryCodec) Encode(e DedupeEntry) ([]byte, error) {
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
	return b, nil
}

// Decode parses record bytes written by any version of Encode.
func (DedupeEntryCodec) Decode(b []byte) (DedupeEntry, error) {
	var e DedupeEntry
	r := reader{b: b}
	r.version("dedupe entry", dedupeVersion)
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
	if err := r.finish("dedupe entry"); err != nil {
		return DedupeEntry{}, err
	}
	return e, nil
}

// Seen reports whether id is in e.IDs.
func (e *DedupeEntry) Seen(id uint64) bool {
	_, ok := slices.BinarySearch(e.IDs, id)
	return ok
}

// Add inserts id into e.IDs, keeping them sorted, and reports whether it
// was new.
func (e *DedupeEntry) Add(id uint64) bool {
	i, ok := slices.BinarySearch(e.IDs, id)
	if ok {
		return false
	}
	e.IDs = slices.Insert(e.IDs, i, id)
	return true
}
