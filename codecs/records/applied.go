package records

import (
	"encoding/binary"
	"time"
)

// AppliedPackages is the set of package identities (raw offset and part,
// see Readings.HasIdentity) of the Readings records applied to a device's
// state, each with its package's receive time, in the order applied
// (DeviceState.Packages, format version 4). A Readings record that an
// upstream stage writes again when it replays (dedupe after a crash or a
// takeover: same identity, a new offset of telemetry.normalized) is thereby
// recognised however many of the device's records came in between, as long
// as its package is still kept: see Add.
//
// It is kept encoded, as the device-state table holds it, because the state
// is decoded and written again for every record: applying a new package
// appends a few bytes and drops the oldest entries from the front, and a
// package newer than every one kept is known new without reading the
// entries. Entries are in the order applied, each as three zigzag varints:
// its raw offset, part and receive time (whole seconds) minus those of the
// entry before (the first's minus zero). A device's packages live in one
// raw partition and are applied in about their raw order, so the deltas
// take 3 to 5 bytes an entry (6-10 KB at PackagesLimit).
type AppliedPackages struct {
	n int
	// maxRaw is the highest raw offset ever added, newest the newest
	// receive time (Unix ms) and last the newest entry (absolute).
	maxRaw, newest int64
	last           packageEntry
	enc            []byte
}

// packageEntry is one package identity with its receive time in seconds.
type packageEntry struct{ raw, part, sec int64 }

// PackagesLimit bounds AppliedPackages: at most this many identities are
// kept, whatever the horizon.
const PackagesLimit = 2048

// Len returns the number of identities kept.
func (a *AppliedPackages) Len() int { return a.n }

// Contains reports whether the package part (raw, part) is kept.
func (a *AppliedPackages) Contains(raw, part int64) bool {
	if a.n == 0 || raw > a.maxRaw {
		return false
	}
	if a.last.raw == raw && a.last.part == part {
		return true
	}
	var e packageEntry
	for off := 0; off < len(a.enc); {
		off = e.next(a.enc, off)
		if e.raw == raw && e.part == part {
			return true
		}
	}
	return false
}

// Add keeps the package part (raw, part) received at receivedMs (Unix ms),
// then forgets the oldest identities (in the order added) beyond
// PackagesLimit, and those received more than horizon before the newest
// receive time while more than AppliedLimit are kept: so at least the last
// AppliedLimit identities are kept, and beyond them every one received
// within horizon of the newest that has no older one before it, up to
// PackagesLimit.
func (a *AppliedPackages) Add(raw, part, receivedMs int64, horizon time.Duration) {
	e := packageEntry{raw: raw, part: part, sec: floorDiv(receivedMs, 1000)}
	var prev packageEntry
	if a.n > 0 {
		prev = a.last
	} else {
		a.maxRaw, a.newest = raw, receivedMs
	}
	a.enc = e.appendDelta(a.enc, prev)
	a.n++
	a.last = e
	a.maxRaw = max(a.maxRaw, raw)
	a.newest = max(a.newest, receivedMs)
	a.forget(floorDiv(a.newest-horizon.Milliseconds(), 1000))
}

// forget drops entries from the front while more than PackagesLimit are
// kept, or more than AppliedLimit and the front one was received before
// oldestSec.
func (a *AppliedPackages) forget(oldestSec int64) {
	if a.n <= AppliedLimit {
		return
	}
	var e packageEntry // the front entry kept, absolute, ending at end
	drop := 0
	end := e.next(a.enc, 0)
	for a.n-drop > AppliedLimit && (a.n-drop > PackagesLimit || e.sec < oldestSec) {
		drop++
		end = e.next(a.enc, end)
	}
	if drop == 0 {
		return
	}
	// The new first entry is written against zero in place of the bytes
	// of the dropped ones and its own delta.
	var buf [3 * binary.MaxVarintLen64]byte
	head := e.appendDelta(buf[:0], packageEntry{})
	if len(head) <= end {
		copy(a.enc[end-len(head):], head)
		a.enc = a.enc[end-len(head):]
	} else {
		a.enc = append(head, a.enc[end:]...)
	}
	a.n -= drop
}

// next reads the entry at off of enc as a delta from e into e and returns
// the offset after it; len(enc) when enc holds no whole entry there.
func (e *packageEntry) next(enc []byte, off int) int {
	var d [3]int64
	for i := range d {
		v, k := binary.Varint(enc[min(off, len(enc)):])
		if k <= 0 {
			return len(enc)
		}
		d[i], off = v, off+k
	}
	e.raw, e.part, e.sec = e.raw+d[0], e.part+d[1], e.sec+d[2]
	return off
}

// appendDelta appends e as a delta from prev.
func (e packageEntry) appendDelta(b []byte, prev packageEntry) []byte {
	b = binary.AppendVarint(b, e.raw-prev.raw)
	b = binary.AppendVarint(b, e.part-prev.part)
	return binary.AppendVarint(b, e.sec-prev.sec)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// appendPackages appends a: the count (uvarint) and, when not zero, the
// highest raw offset and newest receive time, the last entry's raw offset,
// part and seconds (varints), the entries' length in bytes (uvarint) and
// the entries.
func appendPackages(b []byte, a *AppliedPackages) []byte {
	b = binary.AppendUvarint(b, uint64(a.n))
	if a.n == 0 {
		return b
	}
	for _, v := range []int64{a.maxRaw, a.newest, a.last.raw, a.last.part, a.last.sec} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(a.enc)))
	return append(b, a.enc...)
}

// packages reads what appendPackages wrote.
func (r *reader) packages() AppliedPackages {
	var a AppliedPackages
	n := r.length("applied packages", 3)
	if n == 0 {
		return a
	}
	a.n = n
	a.maxRaw, a.newest = r.varint("highest raw offset"), r.varint("newest receive time")
	a.last = packageEntry{raw: r.varint("last raw offset"), part: r.varint("last part"), sec: r.varint("last receive time")}
	size := r.length("applied packages' bytes", 1)
	p := r.raw("applied packages' entries", size)
	if size < 3*n {
		r.fail("applied packages' entries")
	}
	if r.err != nil {
		return AppliedPackages{}
	}
	// A copy with room to append a few entries: the caller's buffer may be
	// reused. The entries are not read here: the state is decoded for
	// every record, and a package newer than every kept one needs none.
	a.enc = append(make([]byte, 0, len(p)+64), p...)
	return a
}
