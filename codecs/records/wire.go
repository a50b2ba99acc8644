package records

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/watershed-io/watershed/topology/deadletter"
)

// ErrCorrupt is wrapped by every decode error caused by malformed record
// bytes (truncated, over-long, or otherwise inconsistent). It is the
// dead-letter envelope's deadletter.ErrCorrupt, so that one test serves
// every record format.
var ErrCorrupt = deadletter.ErrCorrupt

// ErrVersion is wrapped by the decode error for a record whose format
// version this reader does not know (written by a newer writer, or
// garbage): deadletter.ErrVersion.
var ErrVersion = deadletter.ErrVersion

// appendString appends s as a uvarint length followed by its bytes.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendNullableBytes appends p as uvarint(len+1) followed by its bytes; a
// nil p is written as a single 0 so that nil and empty stay distinct (Kafka
// keys and values make that distinction).
func appendNullableBytes(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p))+1)
	return append(b, p...)
}

// appendTime appends t as a varint of Unix seconds and a uvarint of
// nanoseconds. The location is not kept: decoding yields UTC, and the zero
// time decodes to the zero time.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// reader reads the primitive encodings above from a byte slice. The first
// failure is sticky: later reads return zero values and err stays set, so a
// decoder can read a whole record and check err once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at offset %d", ErrCorrupt, what, r.off)
	}
}

// remaining is the number of unread bytes.
func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) byte1(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(what)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.off += n
	return v
}

// uint32v reads a uvarint that must fit in 32 bits.
func (r *reader) uint32v(what string) uint32 {
	v := r.uvarint(what)
	if v > math.MaxUint32 {
		r.fail(what)
		return 0
	}
	return uint32(v)
}

// int32v reads a varint that must fit in 32 bits.
func (r *reader) int32v(what string) int32 {
	v := r.varint(what)
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail(what)
		return 0
	}
	return int32(v)
}

// length reads a uvarint count of items that each take at least minSize
// bytes, and fails unless that many items can fit in the unread bytes; so a
// hostile count can never cause a large allocation.
func (r *reader) length(what string, minSize int) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if v > uint64(r.remaining()/minSize) {
		r.fail(what)
		return 0
	}
	return int(v)
}

// raw returns the next n bytes without copying.
func (r *reader) raw(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail(what)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) string(what string) string {
	n := r.length(what, 1)
	return string(r.raw(what, n))
}

// nullableBytes reads what appendNullableBytes wrote, as a fresh copy.
func (r *reader) nullableBytes(what string) []byte {
	v := r.uvarint(what)
	if r.err != nil || v == 0 {
		return nil
	}
	if v-1 > uint64(r.remaining()) {
		r.fail(what)
		return nil
	}
	p := r.raw(what, int(v-1))
	out := make([]byte, len(p))
	copy(out, p)
	return out
}

func (r *reader) time(what string) time.Time {
	sec := r.varint(what)
	nsec := r.uvarint(what)
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		r.fail(what)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// version reads the leading format-version byte and checks it is between 1
// and max.
func (r *reader) version(kind string, max byte) byte {
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: empty %s record", ErrCorrupt, kind)
		return 0
	}
	v := r.b[0]
	r.off = 1
	if v == 0 || v > max {
		r.err = fmt.Errorf("%w: %s record version %d (this reader knows 1..%d)", ErrVersion, kind, v, max)
		return 0
	}
	return v
}

// finish reports the sticky error, or trailing bytes as corruption.
func (r *reader) finish(kind string) error {
	if r.err != nil {
		return fmt.Errorf("records: decode %s: %w", kind, r.err)
	}
	if r.off != len(r.b) {
		return fmt.Errorf("records: decode %s: %w: %d trailing bytes", kind, ErrCorrupt, len(r.b)-r.off)
	}
	return nil
}

// appendFixed32 appends v big-endian (CRCs are uniformly spread, so a
// varint would be longer).
func appendFixed32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

func (r *reader) fixed32(what string) uint32 {
	p := r.raw(what, 4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

// fixed64 reads 8 bytes big-endian (hashes, which varints would lengthen).
func (r *reader) fixed64(what string) uint64 {
	p := r.raw(what, 8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// appendScaled appends x compactly and losslessly: as zigzag(k)<<1 in a
// uvarint when x == k/scale exactly for an integer k with |k| < 2^52 (what
// values converted from the wire's integer units are), and otherwise as a
// uvarint 1 followed by the 8 bytes of its IEEE 754 bits.
func appendScaled(b []byte, x, scale float64) []byte {
	var zero int64
	return appendScaledDelta(b, x, scale, &zero)
}

// scaled reads what appendScaled wrote.
func (r *reader) scaled(what string, scale float64) float64 {
	var zero int64
	return r.scaledDelta(what, scale, &zero)
}

// appendScaledDelta appends x as appendScaled does, but the integer k of
// its compact form as its difference from *prev (zigzag(k-*prev)<<1 in a
// uvarint), and sets *prev to k; x without a compact form takes the raw
// one and leaves *prev. Values near the one before take a byte or two.
func appendScaledDelta(b []byte, x, scale float64, prev *int64) []byte {
	k := math.Round(x * scale)
	if math.Abs(k) < 1<<52 {
		// Compare what the reader will compute, bit for bit (so -0 and
		// NaN take the raw form).
		ki := int64(k)
		if math.Float64bits(float64(ki)/scale) == math.Float64bits(x) {
			d := ki - *prev
			*prev = ki
			return binary.AppendUvarint(b, uint64(d<<1^d>>63)<<1)
		}
	}
	b = append(b, 1)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(x))
}

// scaledDelta reads what appendScaledDelta wrote against *prev.
func (r *reader) scaledDelta(what string, scale float64, prev *int64) float64 {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if v == 1 {
		p := r.raw(what, 8)
		if p == nil {
			return 0
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p))
	}
	// |k| and |*prev| are below 2^52: a difference of 2^53 or more is
	// corrupt (and would overflow).
	if v&1 != 0 || v>>1 >= 1<<54 {
		r.fail(what)
		return 0
	}
	z := v >> 1
	k := *prev + (int64(z>>1) ^ -int64(z&1))
	if k >= 1<<52 || k <= -(1<<52) {
		r.fail(what)
		return 0
	}
	*prev = k
	return float64(k) / scale
}

// bounded reads a uvarint that must be at most max.
func (r *reader) bounded(what string, max uint64) uint64 {
	v := r.uvarint(what)
	if v > max {
		r.fail(what)
		return 0
	}
	return v
}

// int16v reads a varint that must fit in 16 bits.
func (r *reader) int16v(what string) int16 {
	v := r.varint(what)
	if v < math.MinInt16 || v > math.MaxInt16 {
		r.fail(what)
		return 0
	}
	return int16(v)
}
