package protocol

import "encoding/binary"

// The fast path of the record loop.
//
// A typical package is 40 short records that are all kept, and at this
// size the per-record overhead decides the decoder's speed: the snappy +
// CRC baseline spends about 130 ns on the whole package. fastRecords
// decodes such records with no function call at all. Go has no
// callee-saved registers, so any call in the loop, even one never taken
// on the common path, makes the compiler keep the loop's state on the
// stack and reload it on every iteration. Everything else — rejections,
// duplicates, CRC collisions, payloads over 16 bytes, framing errors — is
// left to the reference path, Decoder.record, one record at a time.

// fastRecords decodes records i, i+1, ... (of n) from r.off on for as long
// as each is a common record, and returns the index of the first record
// it leaves to Decoder.record (n if none). A common record has a payload of
// 1 to 16 bytes whose first 16 bytes lie within cap(r.body), a right CRC,
// a CRC new to the package while the duplicate table is keyed by CRC (so
// it is no duplicate), and the right length and padding for a known type:
// it is kept, with exactly the fields, times and CRCs that record would
// give it. fastRecords leaves the table untouched for the record it stops
// at.
func (d *Decoder) fastRecords(r *records, i, n int) int {
	if d.hashMode {
		return i
	}
	body := r.body
	// win is body with its spare capacity: decompress leaves 16 bytes
	// after the body, so that the last payloads too are loaded 16 bytes at
	// a time. Bytes past a payload are masked off, and the record's
	// framing is checked against len(body).
	win := body[:cap(body)]
	off, kept := r.off, r.kept
	msgs, specs, base := r.msgs, r.specs, r.base
	table := d.table
	mask := uint64(len(table) - 1)
	shift := d.shift & 63
loop:
	for ; i < n; i++ {
		ps := off + RecordHeaderLen
		if ps+16 > len(win) {
			break
		}
		rec := at6(win, off)
		pl := int(binary.BigEndian.Uint16(rec[0:]))
		sum := binary.BigEndian.Uint32(rec[2:])
		end := ps + pl
		if uint(pl-1) >= 16 || end > len(body) {
			break
		}
		// The payload as a 128-bit big-endian value hi:lo, the bytes past
		// it zeroed, and as bytes in w.
		q := at16(win, ps)
		hi := binary.BigEndian.Uint64(q[0:]) & payloadMaskHi[pl]
		lo := binary.BigEndian.Uint64(q[8:]) & payloadMaskLo[pl]
		var w [16]byte
		binary.BigEndian.PutUint64(w[0:], hi)
		binary.BigEndian.PutUint64(w[8:], lo)

		// Record check 1, with the tables of shortcrc.go: byte j takes
		// table 15-j of u; four independent partial XORs. A byte load
		// from w is cheaper than shifting the byte out of hi:lo.
		u := crcTablesFor[pl]
		got := ^(crcInit[pl] ^
			(u[15][w[0]] ^ u[14][w[1]] ^ u[13][w[2]] ^ u[12][w[3]]) ^
			(u[11][w[4]] ^ u[10][w[5]] ^ u[9][w[6]] ^ u[8][w[7]]) ^
			(u[7][w[8]] ^ u[6][w[9]] ^ u[5][w[10]] ^ u[4][w[11]]) ^
			(u[3][w[12]] ^ u[2][w[13]] ^ u[1][w[14]] ^ u[0][w[15]]))
		if got != sum {
			break
		}

		// Record checks 3-4 before check 2, so that a record left to
		// Decoder.record has not been entered in the table. pl < 4 never
		// equals a known type's length.
		t := MsgType(hi >> 60)
		spec := &specs[t]
		if pl != spec.len || hi&spec.padHi|lo&spec.padLo != 0 {
			break
		}

		// Record check 2: linear probing for the CRC (see Decoder.seen). A
		// free slot before any equal key means no earlier record has this
		// CRC, so this one is new: it takes the slot. An equal key (a
		// duplicate, or a CRC collision) is for Decoder.record.
		j := (uint64(sum) * 0x9E3779B97F4A7C15) >> shift
		for {
			j &= mask
			e := table[j]
			if e == 0 {
				break
			}
			if e.key() == sum {
				break loop
			}
			j++
		}
		table[j] = slot(uint64(sum)<<32 | uint64(off+1))

		// Kept. Zero the slot in place and store the fields one by one: a
		// composite literal would be built on the stack and copied, and
		// the copy's wide loads of freshly written narrow fields stall
		// store forwarding. The fields are as in parsePayload.
		m := &msgs[kept]
		kept++
		off = end
		*m = Message{}
		offset := uint32(hi>>38) & MaxTimeOffsetMs
		m.Type = t
		m.OffsetMs = offset
		m.TimeMs = base + uint64(offset)
		m.CRC = sum
		m.ContentCRC = contentCRC(u, sum, &w)
		switch t {
		case TypeGPS:
			m.LatE7 = int32(uint32(bits(hi, lo, 26, 32)))
			m.LonE7 = int32(uint32(bits(hi, lo, 58, 32)))
			m.SpeedDkmh = uint16(bits(hi, lo, 90, 12))
			m.HeadingDeg = uint16(bits(hi, lo, 102, 9))
			if pl == 16 { // version 2 (14 bytes in version 1)
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
	}
	r.off, r.kept = off, kept
	return i
}

// at6 and at16 return b[i:i+6] and b[i:i+16] (within cap(b)) as array
// pointers: one bounds check, then constant indexes and no slice
// arithmetic.
func at6(b []byte, i int) *[6]byte   { return (*[6]byte)(b[i : i+6 : i+6]) }
func at16(b []byte, i int) *[16]byte { return (*[16]byte)(b[i : i+16 : i+16]) }
