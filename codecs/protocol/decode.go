package protocol

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"hash/maphash"
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
	// shift turns a 64-bit key into a table index: the table has
	// 1 << (64-shift) slots.
	shift uint
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
	body := b[h.Len():]
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
	if cap(p.Messages) < n {
		p.Messages = make([]Message, 0, n)
	}
	d.resetTable(n)
	off := 0
	for i := 0; i < n; i++ {
		if len(body)-off < RecordHeaderLen {
			return reject(6, ReasonCountMismatch, "record %d of %d: header runs past the body end", i, n)
		}
		start := off
		pl := int(binary.BigEndian.Uint16(body[off:]))
		sum := binary.BigEndian.Uint32(body[off+2:])
		ps := off + RecordHeaderLen
		off = ps + pl
		if off > len(body) {
			return reject(6, ReasonCountMismatch, "record %d of %d: payload runs past the body end", i, n)
		}
		payload := body[ps:off]
		// Record check 1.
		if crc(payload) != sum {
			p.Rejected = append(p.Rejected, RecordRejection{Index: i, Reason: ReasonMessageCRC})
			continue
		}
		// Record check 2.
		if d.seen(body, start, sum, payload) {
			p.IntraPackageDuplicates++
			continue
		}
		// Record checks 3-4, on the payload's first 16 bytes as a 128-bit
		// big-endian value, loaded in place when the body is long enough.
		var hi, lo uint64
		if ps+16 <= len(body) {
			hi = binary.BigEndian.Uint64(body[ps:])
			lo = binary.BigEndian.Uint64(body[ps+8:])
		} else {
			hi, lo = load128(payload)
		}
		var m Message
		if r := parsePayload(h.Version, pl, hi, lo, &m); r != ReasonNone {
			p.Rejected = append(p.Rejected, RecordRejection{Index: i, Reason: r})
			continue
		}
		m.CRC = sum
		m.TimeMs = h.BaseTimeMs + uint64(m.OffsetMs)
		m.ContentCRC = contentCRC(sum, pl, m.OffsetMs)
		p.Messages = append(p.Messages, m)
	}
	if off != len(body) {
		return reject(6, ReasonCountMismatch, "%d bytes left after %d records", len(body)-off, n)
	}
	return nil
}

// load128 returns up to the first 16 bytes of p as a 128-bit big-endian
// value, zero-padded.
func load128(p []byte) (hi, lo uint64) {
	for i := 0; i < len(p) && i < 16; i++ {
		if i < 8 {
			hi |= uint64(p[i]) << (56 - 8*i)
		} else {
			lo |= uint64(p[i]) << (56 - 8*(i-8))
		}
	}
	return hi, lo
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
		d.body = make([]byte, n)
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

// resetTable empties the duplicate table, sized for n records.
func (d *Decoder) resetTable(n int) {
	size, shift := 16, uint(60)
	for size < 2*n {
		size <<= 1
		shift--
	}
	d.shift = shift
	d.hashMode = false
	if cap(d.table) < size {
		d.table = make([]slot, size)
		return
	}
	d.table = d.table[:size]
	clear(d.table)
}

// slot is an entry of the duplicate table: a record's key and its offset
// in the body + 1 (0 for an empty slot).
type slot struct {
	key uint64
	off uint32
}

// seen reports whether an earlier CRC-valid record of the package has the
// same CRC and payload bytes as the record at offset start, and otherwise
// adds the record to the table.
func (d *Decoder) seen(body []byte, start int, sum uint32, payload []byte) bool {
	key := uint64(sum)
	if d.hashMode {
		key = maphash.Bytes(d.seed, payload)
	}
	mask := uint64(len(d.table) - 1)
	// Fibonacci hashing: the top bits of the product depend on all bits of
	// the key.
	i := (key * 0x9E3779B97F4A7C15) >> d.shift
	for {
		e := &d.table[i]
		if e.off == 0 {
			*e = slot{key: key, off: uint32(start) + 1}
			return false
		}
		if e.key == key {
			o := int(e.off - 1)
			pl := int(binary.BigEndian.Uint16(body[o:]))
			if pl == len(payload) && bytes.Equal(body[o+RecordHeaderLen:o+RecordHeaderLen+pl], payload) {
				return true
			}
			if !d.hashMode {
				d.enterHashMode(body)
				return d.seen(body, start, sum, payload)
			}
		}
		i = (i + 1) & mask
	}
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
		if e.off != 0 {
			d.offs = append(d.offs, e.off)
		}
	}
	clear(d.table)
	mask := uint64(len(d.table) - 1)
	for _, off := range d.offs {
		o := int(off - 1)
		pl := int(binary.BigEndian.Uint16(body[o:]))
		key := maphash.Bytes(d.seed, body[o+RecordHeaderLen:o+RecordHeaderLen+pl])
		i := (key * 0x9E3779B97F4A7C15) >> d.shift
		for d.table[i].off != 0 {
			i = (i + 1) & mask
		}
		d.table[i] = slot{key: key, off: off}
	}
}

// bits returns the w-bit field (1 <= w <= 64) at bit position pos of the
// 128-bit big-endian value hi:lo.
func bits(hi, lo uint64, pos, w uint) uint64 {
	var v uint64
	if pos < 64 {
		v = hi<<pos | lo>>(64-pos)
	} else {
		v = lo << (pos - 64)
	}
	return v >> (64 - w)
}

// padZero reports whether every bit of hi:lo from position used on is zero.
func padZero(hi, lo uint64, used uint) bool {
	if used < 64 {
		return hi<<used == 0 && lo == 0
	}
	return lo<<(used-64) == 0
}

// parsePayload runs record checks 3 and 4 on a payload of length pl whose
// first 16 bytes are hi:lo (bytes past pl may be anything), and fills m's
// type, offset and fields. It returns ReasonNone when the payload is good.
func parsePayload(version uint8, pl int, hi, lo uint64, m *Message) Reason {
	if pl < 4 {
		return ReasonBadLength
	}
	t := MsgType(hi >> 60)
	want, ok := PayloadLen(version, t)
	if !ok {
		return ReasonUnknownType
	}
	if pl != want {
		return ReasonBadLength
	}
	// Clear the bits past the payload (pl is 5..16 here).
	if pl < 8 {
		hi &= ^uint64(0) << (64 - 8*uint(pl))
		lo = 0
	} else {
		lo &= ^uint64(0) << (128 - 8*uint(pl))
	}
	var used uint
	switch t {
	case TypeGPS:
		m.LatE7 = int32(uint32(bits(hi, lo, 26, 32)))
		m.LonE7 = int32(uint32(bits(hi, lo, 58, 32)))
		m.SpeedDkmh = uint16(bits(hi, lo, 90, 12))
		m.HeadingDeg = uint16(bits(hi, lo, 102, 9))
		used = 111
		if version >= 2 {
			m.HdopD = uint8(bits(hi, lo, 111, 8))
			m.Satellites = uint8(bits(hi, lo, 119, 5))
			used = 124
		}
	case TypeAccel:
		m.XMg = int16(uint16(bits(hi, lo, 26, 16)))
		m.YMg = int16(uint16(bits(hi, lo, 42, 16)))
		m.ZMg = int16(uint16(bits(hi, lo, 58, 16)))
		used = 74
	case TypeEngine:
		m.RPM = uint16(bits(hi, lo, 26, 14))
		m.CoolantRaw = uint8(bits(hi, lo, 40, 8))
		m.FuelPct = uint8(bits(hi, lo, 48, 7))
		used = 55
	case TypeEvent:
		m.Code = uint8(bits(hi, lo, 26, 8))
		m.Severity = uint8(bits(hi, lo, 34, 3))
		used = 37
	case TypeBattery:
		m.Millivolts = uint16(bits(hi, lo, 26, 16))
		used = 42
	}
	if !padZero(hi, lo, used) {
		return ReasonBadLength
	}
	m.Type = t
	m.OffsetMs = uint32(hi>>38) & MaxTimeOffsetMs
	return ReasonNone
}
