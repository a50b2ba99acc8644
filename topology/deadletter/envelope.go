// Package deadletter holds the framework's dead-letter envelope: the record
// a processor writes to its topology's dead-letter topic for a record it
// gave up on, saying where the record came from and why it failed, and the
// envelope's binary codec. It imports nothing of the framework, so that
// tools reading the dead-letter topic need not.
package deadletter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Header is one Kafka record header, kept in a dead-letter envelope.
type Header struct {
	Key   string
	Value []byte
}

// Envelope is a dead-letter record: a record that a stage could not process,
// with where it came from and why it failed. Key, Value and Headers are the
// original record's, unchanged.
type Envelope struct {
	// Stage names the stage that gave up on the record.
	Stage string
	// Reason is a short machine-readable reason (a protocol reason word
	// such as "header_crc", or a stage's own).
	Reason string
	// Error is the human-readable error text.
	Error string
	// Topic, Partition and Offset locate the original record.
	Topic     string
	Partition int32
	Offset    int64
	// Key and Value are the original record's bytes; nil and empty differ.
	Key   []byte
	Value []byte
	// Headers are the original record's headers.
	Headers []Header
	// Timestamp is the original record's time.
	Timestamp time.Time
	// Attempts counts the attempts made to process the record.
	Attempts int
	// FirstFailure and LastFailure are when the first and last attempts
	// failed.
	FirstFailure time.Time
	LastFailure  time.Time
}

// ErrCorrupt is wrapped by every decode error caused by malformed envelope
// bytes (truncated, over-long, or otherwise inconsistent).
var ErrCorrupt = errors.New("corrupt record")

// ErrVersion is wrapped by the decode error of an envelope whose format
// version this reader does not know (written by a newer writer, or garbage).
var ErrVersion = errors.New("unknown record format version")

// Version is the newest envelope format this package writes and reads.
//
// Version 1: version byte, then Stage, Reason, Error, Topic (uvarint length
// + bytes), Partition (varint), Offset (varint), Key, Value (uvarint len+1
// + bytes, 0 = nil), header count (uvarint) and per header its Key (string)
// and Value (nullable bytes), Timestamp, FirstFailure, LastFailure (each
// varint Unix seconds + uvarint nanoseconds), Attempts (varint).
const Version = 1

// Codec encodes and decodes Envelope records (a codec.Codec[Envelope]).
// Times decode in UTC.
type Codec struct{}

// Encode returns the record bytes of e.
func (Codec) Encode(e Envelope) ([]byte, error) { return Append(nil, e), nil }

// Append appends the record bytes of e to b.
func Append(b []byte, e Envelope) []byte {
	b = append(b, Version)
	for _, s := range []string{e.Stage, e.Reason, e.Error, e.Topic} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, int64(e.Partition))
	b = binary.AppendVarint(b, e.Offset)
	b = appendNullable(b, e.Key)
	b = appendNullable(b, e.Value)
	b = binary.AppendUvarint(b, uint64(len(e.Headers)))
	for _, h := range e.Headers {
		b = binary.AppendUvarint(b, uint64(len(h.Key)))
		b = append(b, h.Key...)
		b = appendNullable(b, h.Value)
	}
	for _, t := range []time.Time{e.Timestamp, e.FirstFailure, e.LastFailure} {
		// The location is not kept: decoding yields UTC.
		b = binary.AppendVarint(b, t.Unix())
		b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	return binary.AppendVarint(b, int64(e.Attempts))
}

// appendNullable writes p as uvarint(len+1) and its bytes, nil as a single
// 0, so that nil and empty stay distinct as Kafka keeps them.
func appendNullable(b, p []byte) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p))+1)
	return append(b, p...)
}

// Decode parses record bytes written by any version of Encode. The result
// shares no memory with b.
func (Codec) Decode(b []byte) (Envelope, error) {
	if len(b) == 0 {
		return Envelope{}, fmt.Errorf("deadletter: decode envelope: %w: empty record", ErrCorrupt)
	}
	if b[0] == 0 || b[0] > Version {
		return Envelope{}, fmt.Errorf("deadletter: decode envelope: %w: version %d (this reader knows 1..%d)", ErrVersion, b[0], Version)
	}
	d := decoder{b: b[1:]}
	var e Envelope
	for _, s := range []*string{&e.Stage, &e.Reason, &e.Error, &e.Topic} {
		*s = string(d.bytes(false))
	}
	p := d.varint()
	if int64(int32(p)) != p {
		d.fail()
	}
	e.Partition = int32(p)
	e.Offset = d.varint()
	e.Key = d.bytes(true)
	e.Value = d.bytes(true)
	// A header takes at least 2 bytes (empty key, nil value): a count
	// beyond the bytes left fails here instead of allocating.
	if n := d.uvarint(); n > uint64(len(d.b)/2) {
		d.fail()
	} else if n > 0 {
		e.Headers = make([]Header, n)
		for i := range e.Headers {
			e.Headers[i].Key = string(d.bytes(false))
			e.Headers[i].Value = d.bytes(true)
		}
	}
	for _, t := range []*time.Time{&e.Timestamp, &e.FirstFailure, &e.LastFailure} {
		*t = d.time()
	}
	e.Attempts = int(d.varint())
	if d.err == nil && len(d.b) > 0 {
		return Envelope{}, fmt.Errorf("deadletter: decode envelope: %w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	if d.err != nil {
		return Envelope{}, fmt.Errorf("deadletter: decode envelope: %w", d.err)
	}
	return e, nil
}

// decoder consumes b; its first failure is sticky, so that an envelope is
// read whole and checked once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 { return next(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return next(d, binary.Varint) }

// next reads one varint with read (binary.Uvarint or binary.Varint).
func next[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed field, as a copy; nullable fields store
// length+1 with 0 for nil.
func (d *decoder) bytes(nullable bool) []byte {
	n := d.uvarint()
	if nullable {
		if n == 0 {
			return nil
		}
		n--
	}
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b)
	d.b = d.b[n:]
	return out
}

func (d *decoder) time() time.Time {
	sec, nsec := d.varint(), d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}
