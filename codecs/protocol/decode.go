package protocol

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"hash/maphash"
	"math/rand/v2"
)

// castagnoli is the CRC-32C table. crc32.MakeTable returns the same
// read-only table on every call; it is never written after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// CheckHeader runs package checks 1-4 of PROTOCOL.md on the whole package b
// (header and body; the body is not inspected beyond its length) and
// returns the header. On failure the error is a *PackageError whose Check
// tells the groups apart: checks 1-2 (Check <= 2, HeaderTrusted false:
// truncated header, bad_magic, unsupported_version, header_crc) mean the
// bytes are not a package at all, and the returned Header is zero; checks
// 3-4 (HeaderTrusted true: bad_flags, zero_device, bad_count, too_large,
// truncated body, trailing_bytes) mean the header is intact but the package
// is not acceptable, and the returned Header holds its fields.
func CheckHeader(b []byte) (Header, error) {
	h, err := checkHeader(b)
	if err != nil {
		return h, err
	}
	return h, nil
}

// checkHeader returns *PackageError rather than error so that the hot path
// does not box a nil pointer.
func checkHeader(b []byte) (Header, *PackageError) {
	var h Header
	// Check 1.
	if len(b) < 3 {
		return h, reject(1, ReasonTruncated, "%d bytes, fewer than 3", len(b))
	}
	if b[0] != Magic[0] || b[1] != Magic[1] {
		return h, reject(1, ReasonBadMagic, "magic %#02x %#02x", b[0], b[1])
	}
	version := b[2]
	var hl int
	switch version {
	case 1:
		hl = HeaderLenV1
	case 2:
		hl = HeaderLenV2
	default:
		return h, reject(1, ReasonUnsupportedVersion, "version %d", version)
	}
	// Check 2.
	if len(b) < hl {
		return h, reject(2, ReasonTruncated, "%d bytes, fewer than the version %d header's %d", len(b), version, hl)
	}
	if got, want := binary.BigEndian.Uint32(b[hl-4:]), crc(b[:hl-4]); got != want {
		return h, reject(2, ReasonHeaderCRC, "header crc %#08x, computed %#08x", got, want)
	}
	h = Header{
		Version:      version,
		Flags:        b[3],
		DeviceID:     binary.BigEndian.Uint64(b[4:]),
		PackageSeq:   binary.BigEndian.Uint32(b[12:]),
		BaseTimeMs:   binary.BigEndian.Uint64(b[16:]),
		MessageCount: binary.BigEndian.Uint16(b[24:]),
		BodyLen:      binary.BigEndian.Uint32(b[26:]),
	}
	if version == 2 {
		h.Firmware = binary.BigEndian.Uint16(b[30:])
	}
	// Check 3.
	if h.Flags&^FlagSnappy != 0 {
		return h, reject(3, ReasonBadFlags, "flags %#02x", h.Flags)
	}
	if h.DeviceID == 0 {
		return h, reject(3, ReasonZeroDevice, "device_id 0")
	}
	if h.MessageCount == 0 || h.MessageCount > MaxMessages {
		return h, reject(3, ReasonBadCount, "message_count %d", h.MessageCount)
	}
	// Check 4.
	if h.BodyLen > MaxBodyLen {
		return h, reject(4, ReasonTooLarge, "body_len %d", h.BodyLen)
	}
	if want := hl + int(h.BodyLen); len(b) < want {
		return h, reject(4, ReasonTruncated, "%d bytes, header + body_len is %d", len(b), want)
	} else if len(b) > want {
		return h, reject(4, ReasonTrailingBytes, "%d bytes, header + body_len is %d", len(b), want)
	}
	return h, nil
}

// Decoder decodes packages. It keeps scratch buffers between calls, so that
// once warm (after a package at least as large as the next), decoding
// allocates nothing. A Decoder is not safe for concurrent use; use one per
// goroutine. The zero Decoder is ready to use.
type Decoder struct {
	// body receives decompressed bodies.
	body []byte
	// table is an open-addressing hash set of the CRC-valid records seen so
	// far in the package, for intra-package duplicates, keyed by the
	// record CRC, or, in hashMode, by a seeded hash of the payload.
	table []slot
	// A key's slot is given by slotIndex: multiply-shift hashing with
	// mult, a random odd number drawn once per Decoder. With a constant
	// multiplier, distinct CRCs that share a slot are easy to forge (the
	// CRC is linear), and a package of 4096 of them made each insertion
	// probe through all the earlier ones: 7 ms for a 57 KB package
	// (BenchmarkDecodeSlotCollisions).
	mult uint64
	// hashMode is set, for the rest of a package, when two different
	// payloads of the package share a CRC. That is rare by chance but easy
	// to forge (the CRC is linear), and a forged package of many distinct
	// records with one CRC would make CRC-keyed lookups quadratic; keyed
	// by a hash with a secret seed, collisions cannot be forged.
	hashMode bool
	seed     maphash.Seed
	seeded   bool
	// offs is scratch for rebuilding the table in hashMode.
	offs []uint32
	// slowOnly makes the decoder take the reference path (record) for
	// every record, never fastRecords; tests set it to compare the two.
	slowOnly bool
}

// Decode decodes the package b into p, reusing p's slices. It returns nil
// when the package is accepted (some of its records may still be rejected:
// see p.Rejected), or a *PackageError when the whole package is rejected;
// then p.Header holds the header if err.HeaderTrusted(), and p has no
// messages, duplicates or rejections. p shares no memory with b.
func (d *Decoder) Decode(b []byte, p *Package) error {
	p.Reset()
	if err := d.decode(b, p); err != nil {
		h := p.Header
		p.Reset()
		if err.HeaderTrusted() {
			p.Header = h
		}
		return err
	}
	return nil
}

// Decode decodes the package b with a fresh Decoder; see Decoder.Decode.
// On a package rejection it returns the *PackageError and a nil Package.
func Decode(b []byte) (*Package, error) {
	var d Decoder
	p := new(Package)
	if err := d.Decode(b, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (d *Decoder) decode(b []byte, p *Package) *PackageError {
	h, perr := checkHeader(b)
	p.Header = h
	if perr != nil {
		return perr
	}
	// With no spare capacity, so that nothing reads past the input
	// (fastRecords reads up to cap(body)).
	body := b[h.Len():len(b):len(b)]
	// Check 5.
	if h.Flags&FlagSnappy != 0 {
		if body, perr = d.decompress(body); perr != nil {
			return perr
		}
	}
	// Check 6 (the records must fill the body exactly) runs along with the
	// record checks: the records are decoded as they are framed, and a
	// framing failure discards what was decoded (Decode resets p).
	n := int(h.MessageCount)
	// Kept messages are written in place into msgs, which has room for
	// every record: building a Message elsewhere and appending it would
	// cost a copy of the whole struct per message.
	msgs := p.Messages[:0]
	if cap(msgs) < n {
		msgs = make([]Message, 0, n)
		p.Messages = msgs
	}
	d.resetTable(n)
	r := d.newRecords(h, body, msgs[:n])
	// The common records go through fastRecords, which stops at the first
	// record it does not handle; record decodes that one, and so on.
	for i := 0; i < n; i++ {
		if !d.slowOnly {
			if i = d.fastRecords(&r, i, n); i == n {
				break
			}
		}
		if perr := d.record(&r, p, i, n); perr != nil {
			return perr
		}
	}
	p.Messages = r.msgs[:r.kept]
	if r.off != len(body) {
		return reject(6, ReasonCountMismatch, "%d bytes left after %d records", len(body)-r.off, n)
	}
	return nil
}

// records is the state of the record loop.
type records struct {
	body []byte // the decompressed body; fastRecords reads up to its cap
	off  int    // offset of the next record in body
	// msgs has room for every record; the kept messages are msgs[:kept].
	msgs []Message
	kept int
	// crcTables is &crcTables, loaded by fastRecords from here so that the
	// compiler keeps it in a register (see crc4At).
	crcTables *[16][256]uint32
	version   uint8
	base      uint64 // base_time_ms
	// fast is fastLoop's state, set once per package.
	fast loopState
}

// newRecords returns the state of the record loop for a package with
// header h, body body and room for its messages in msgs, once d.resetTable
// has sized the duplicate table for it.
func (d *Decoder) newRecords(h Header, body []byte, msgs []Message) records {
	return records{
		body:      body,
		msgs:      msgs,
		crcTables: &crcTables,
		version:   h.Version,
		base:      h.BaseTimeMs,
		fast: loopState{
			bodyLen: len(body),
			v1:      h.Version == 1,
			base:    h.BaseTimeMs,
			table:   d.table,
			mask:    uint64(len(d.table) - 1),
			mult:    d.mult,
		},
	}
}

// record decodes record i of n, at r.off. It is the reference path: it
// handles every case (rejections, duplicates, CRC collisions, long
// payloads, the body's end) in the order of PROTOCOL.md, plainly written.
// fastRecords does the common case faster; tests check that the two agree.
func (d *Decoder) record(r *records, p *Package, i, n int) *PackageError {
	body := r.body
	if len(body)-r.off < RecordHeaderLen {
		return reject(6, ReasonCountMismatch, "record %d of %d: header runs past the body end", i, n)
	}
	start := r.off
	pl := int(binary.BigEndian.Uint16(body[start:]))
	sum := binary.BigEndian.Uint32(body[start+2:])
	ps := start + RecordHeaderLen
	if ps+pl > len(body) {
		return reject(6, ReasonCountMismatch, "record %d of %d: payload runs past the body end", i, n)
	}
	r.off = ps + pl
	payload := body[ps:r.off]
	// Record check 1.
	if crc(payload) != sum {
		p.Rejected = append(p.Rejected, RecordRejection{Index: i, Reason: ReasonMessageCRC})
		return nil
	}
	// Record check 2.
	if d.seen(body, start, sum, pl) {
		p.IntraPackageDuplicates++
		return nil
	}
	// Record checks 3-4.
	hi, lo := load128(payload)
	m := &r.msgs[r.kept]
	if reason := parsePayload(r.version, pl, hi, lo, m); reason != ReasonNone {
		p.Rejected = append(p.Rejected, RecordRejection{Index: i, Reason: reason})
		return nil
	}
	m.CRC = sum
	m.TimeMs = r.base + uint64(m.OffsetMs)
	// The content CRC by its definition: the CRC of the payload with its
	// 22 offset bits zeroed. (fastRecords derives it from the record CRC.)
	var w [16]byte
	binary.BigEndian.PutUint64(w[:], hi&^offsetBits)
	binary.BigEndian.PutUint64(w[8:], lo)
	m.ContentCRC = crc(w[:pl])
	r.kept++
	return nil
}

// offsetBits are the 22 time-offset bits in a payload's first 8 bytes as a
// big-endian value.
const offsetBits = uint64(MaxTimeOffsetMs) << 38

// load128 returns up to the first 16 bytes of p as a 128-bit big-endian
// value, zero-padded.
func load128(p []byte) (hi, lo uint64) {
	var b [16]byte
	copy(b[:], p)
	return binary.BigEndian.Uint64(b[:]), binary.BigEndian.Uint64(b[8:])
}

// decompress runs package check 5 and returns the decompressed body, which
// lives in d.body until the next call.
func (d *Decoder) decompress(src []byte) ([]byte, *PackageError) {
	// The preamble is a uvarint that must end within 5 bytes and within
	// the body; its value is checked before anything is allocated.
	var n uint64
	i := 0
	for ; ; i++ {
		if i == 5 || i == len(src) {
			return nil, reject(5, ReasonBadCompression, "snappy preamble does not end within %d bytes", i)
		}
		c := src[i]
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			break
		}
	}
	if n > MaxBodyLen {
		return nil, reject(5, ReasonTooLarge, "snappy preamble announces %d bytes", n)
	}
	if uint64(cap(d.body)) < n {
		// 16 bytes to spare, within the spec's limit, let fastRecords load
		// the last payloads 16 bytes at a time too.
		d.body = make([]byte, n, min(n+16, MaxBodyLen))
	}
	out, err := snappyDecode(d.body[:n], src)
	if err != nil {
		return nil, reject(5, ReasonBadCompression, "snappy: %v", err)
	}
	if uint64(len(out)) != n {
		return nil, reject(5, ReasonBadCompression, "snappy decoded %d bytes, preamble announced %d", len(out), n)
	}
	return out, nil
}

// resetTable empties the duplicate table, sized for n records: a power of
// two at least 2n, so that linear probing stays short.
func (d *Decoder) resetTable(n int) {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	d.hashMode = false
	if d.mult == 0 {
		d.mult = rand.Uint64() | 1
	}
	if cap(d.table) < size {
		d.table = make([]slot, size)
		return
	}
	d.table = d.table[:size]
	clear(d.table)
}

// slotIndex is the home slot of key in the duplicate table, before it is
// masked to the table's size (at most 2^13 slots): bits 32 and up of key *
// mult. That is multiply-shift hashing of the 32-bit key with 32+13-bit
// arithmetic (the product's bits below 32+13 depend only on mult's bits
// below 32+13, a random odd number), so every bit of the key counts and,
// with mult secret, keys that share a slot cannot be forged. A fixed shift,
// unlike the table's top bits, needs no shift count in the record loop.
func slotIndex(key uint32, mult uint64) uint64 { return uint64(key) * mult >> 32 }

// slot is an entry of the duplicate table: a record's 32-bit key in the top
// half and its offset in the body + 1 in the bottom half; 0 is an empty
// slot (offsets are below 2^20, so off + 1 is never 0). Eight bytes a slot
// keep the table for a typical package at 1 KiB, cheap to clear.
type slot uint64

func (e slot) key() uint32 { return uint32(e >> 32) }
func (e slot) off() int    { return int(uint32(e)) - 1 }

// seen reports whether an earlier CRC-valid record of the package has the
// same CRC and payload bytes as the record at offset start (payload length
// pl), and otherwise adds the record to the table.
func (d *Decoder) seen(body []byte, start int, sum uint32, pl int) bool {
	key := sum
	if d.hashMode {
		key = d.payloadHash(body, start)
	}
	mask := uint64(len(d.table) - 1)
	i := slotIndex(key, d.mult) & mask
	for {
		e := d.table[i]
		if e == 0 {
			d.table[i] = slot(uint64(key)<<32 | uint64(start+1))
			return false
		}
		if e.key() == key {
			if samePayload(body, e.off(), start, pl) {
				return true
			}
			if !d.hashMode {
				// Two different payloads share a CRC (see Decoder.hashMode).
				d.enterHashMode(body)
				return d.seen(body, start, sum, pl)
			}
			// In hashMode an equal key of a different payload is a chance
			// collision of the seeded hash: probe on.
		}
		i = (i + 1) & mask
	}
}

// samePayload reports whether the record at offset o of body has the
// payload of length pl that starts at offset start + RecordHeaderLen. Both
// records are CRC-valid and share a
// key, so this runs only for duplicates and collisions.
func samePayload(body []byte, o, start, pl int) bool {
	if int(binary.BigEndian.Uint16(body[o:])) != pl {
		return false
	}
	a := body[o+RecordHeaderLen : o+RecordHeaderLen+pl]
	b := body[start+RecordHeaderLen : start+RecordHeaderLen+pl]
	return bytes.Equal(a, b)
}

// payloadHash is the hashMode key of the record at offset o of body: the low
// 32 bits of a seeded hash of its payload. A chance collision only costs a
// payload comparison; without the seed, collisions cannot be forged.
func (d *Decoder) payloadHash(body []byte, o int) uint32 {
	pl := int(binary.BigEndian.Uint16(body[o:]))
	return uint32(maphash.Bytes(d.seed, body[o+RecordHeaderLen:o+RecordHeaderLen+pl]))
}

// enterHashMode re-keys the table by payload hash.
func (d *Decoder) enterHashMode(body []byte) {
	if !d.seeded {
		d.seed = maphash.MakeSeed()
		d.seeded = true
	}
	d.hashMode = true
	d.offs = d.offs[:0]
	for _, e := range d.table {
		if e != 0 {
			d.offs = append(d.offs, uint32(e.off()))
		}
	}
	clear(d.table)
	mask := uint64(len(d.table) - 1)
	for _, o := range d.offs {
		key := d.payloadHash(body, int(o))
		i := slotIndex(key, d.mult) & mask
		for d.table[i] != 0 {
			i = (i + 1) & mask
		}
		d.table[i] = slot(uint64(key)<<32 | uint64(o+1))
	}
}

// bits returns the w-bit field (1 <= w <= 64) at bit position pos of the
// 128-bit big-endian value hi:lo. Called with constants, it inlines to a
// shift and a mask for a field within hi or within lo, and to a shift alone
// when the caller converts the result to a type of w bits (the conversion
// makes the mask redundant); the general case only for a field across the
// two.
func bits(hi, lo uint64, pos, w uint) uint64 {
	switch {
	case pos+w <= 64:
		return hi >> (64 - pos - w) & (1<<w - 1)
	case pos >= 64:
		return lo >> (128 - pos - w) & (1<<w - 1)
	}
	return (hi<<pos | lo>>(64-pos)) >> (64 - w)
}

// payloadSpec is what record checks 3-4 need to know of a message type in
// one version: its payload length (0 for an unknown type) and the mask of
// its padding bits, which must be zero, within the 128-bit big-endian
// value of a payload's first 16 bytes.
type payloadSpec struct {
	len          int
	padHi, padLo uint64
}

// payloadSpecs[version&1][type] is the payloadSpec of a type in a version
// 1 or 2 package (version 1 at index 1, version 2 at index 0). It is
// computed once at package initialisation and only read afterwards.
var payloadSpecs = makePayloadSpecs()

// usedBits is the number of bits up to the end of the type's last field.
func usedBits(version uint8, t MsgType) uint {
	switch t {
	case TypeGPS:
		if version == 1 {
			return 111
		}
		return 124
	case TypeAccel:
		return 74
	case TypeEngine:
		return 55
	case TypeEvent:
		return 37
	case TypeBattery:
		return 42
	}
	return 0
}

func makePayloadSpecs() [2][16]payloadSpec {
	var specs [2][16]payloadSpec
	for _, version := range []uint8{1, 2} {
		for t := range MsgType(16) {
			n, ok := PayloadLen(version, t)
			if !ok {
				continue
			}
			s := payloadSpec{len: n}
			for bit := usedBits(version, t); bit < uint(8*n); bit++ {
				if bit < 64 {
					s.padHi |= 1 << (63 - bit)
				} else {
					s.padLo |= 1 << (127 - bit)
				}
			}
			specs[version&1][t] = s
		}
	}
	return specs
}

// parsePayload runs record checks 3 and 4 on a payload of length pl whose
// first 16 bytes are hi:lo (bytes past pl may be anything). When the
// payload is good it overwrites all of *m (which may hold an older
// message) with the type, offset and fields, leaving CRC, ContentCRC and
// TimeMs to the caller, and returns ReasonNone.
func parsePayload(version uint8, pl int, hi, lo uint64, m *Message) Reason {
	if pl < 4 {
		return ReasonBadLength
	}
	t := MsgType(hi >> 60)
	spec := &payloadSpecs[version&1][t]
	if spec.len == 0 {
		return ReasonUnknownType
	}
	// The padding masks stop at the payload's end, so bytes past pl do
	// not matter, and no field reaches past its type's length.
	if pl != spec.len || hi&spec.padHi|lo&spec.padLo != 0 {
		return ReasonBadLength
	}
	// Zero *m in place, then store the fields one by one: a composite
	// literal would be built on the stack and copied, and the copy's wide
	// loads of freshly written narrow fields stall store forwarding.
	*m = Message{}
	m.Type = t
	m.OffsetMs = uint32(hi>>38) & MaxTimeOffsetMs
	switch t {
	case TypeGPS:
		m.LatE7 = int32(uint32(bits(hi, lo, 26, 32)))
		m.LonE7 = int32(uint32(bits(hi, lo, 58, 32)))
		m.SpeedDkmh = uint16(bits(hi, lo, 90, 12))
		m.HeadingDeg = uint16(bits(hi, lo, 102, 9))
		if version >= 2 {
			m.HdopD = uint8(bits(hi, lo, 111, 8))
			m.Satellites = uint8(bits(hi, lo, 119, 5))
		}
	case TypeAccel:
		m.XMg = int16(uint16(bits(hi, lo, 26, 16)))
		m.YMg = int16(uint16(bits(hi, lo, 42, 16)))
		m.ZMg = int16(uint16(bits(hi, lo, 58, 16)))
	case TypeEngine:
		m.RPM = uint16(bits(hi, lo, 26, 14))
		m.CoolantRaw = uint8(bits(hi, lo, 40, 8))
		m.FuelPct = uint8(bits(hi, lo, 48, 7))
	case TypeEvent:
		m.Code = uint8(bits(hi, lo, 26, 8))
		m.Severity = uint8(bits(hi, lo, 34, 3))
	case TypeBattery:
		m.Millivolts = uint16(bits(hi, lo, 26, 16))
	}
	return ReasonNone
}
