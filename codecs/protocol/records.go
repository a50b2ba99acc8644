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
	// Every record fastLoop decodes is kept, so record i's message goes
	// to msgs[kept + (i-i0)]: msgs is cut to end with record n's, and the
	// loop counts kept alone.
	kept0 := r.kept
	r.off, r.kept = fastLoop(r.body[:cap(r.body)], len(r.body), r.off,
		r.msgs[:kept0+n-i], kept0, r.specs, r.crcTables, r.base, d.table, d.mult, d.shift)
	return i + r.kept - kept0
}

// fastLoop is the loop of fastRecords, with the loop's state passed in
// registers rather than read through r, so that nothing but the state is
// live in the loop: fewer values to spill and reload on every iteration.
// win is the body with its spare capacity: decompress leaves 16 bytes after
// the body, so that the last payloads too are loaded 16 bytes at a time;
// the records' framing is checked against bodyLen. It returns the offset
// of the first record it did not decode and the new count of kept
// messages.
func fastLoop(win []byte, bodyLen, off int, msgs []Message, kept int, specs *[16]payloadSpec,
	tab *[16][256]uint32, base uint64, table []slot, mult uint64, shift uint) (int, int) {
loop:
	for kept < len(msgs) {
		// The record's header and its payload's first 16 bytes, in place:
		// one bounds check, then constant offsets.
		if off+RecordHeaderLen+16 > len(win) {
			break
		}
		rec := (*[RecordHeaderLen + 16]byte)(win[off : off+RecordHeaderLen+16])
		pl := int(binary.BigEndian.Uint16(rec[0:]))
		sum := binary.BigEndian.Uint32(rec[2:])
		end := off + RecordHeaderLen + pl
		if end > bodyLen {
			break
		}
		// The payload as bytes q and as a 128-bit big-endian value hi:lo.
		// The bytes past the payload are left as they are: the padding
		// masks and the fields stop at its end.
		q := (*[16]byte)(rec[RecordHeaderLen:])
		hi := binary.BigEndian.Uint64(q[0:])
		lo := binary.BigEndian.Uint64(q[8:])

		// Record checks 3-4 first: the type, and a length and padding
		// right for it, or the record is left to Decoder.record. (The
		// order of the checks does not matter here: the fast path keeps a
		// record only if it passes all, and touches nothing for one it
		// leaves.)
		typ := MsgType(hi >> 60)
		spec := &specs[typ]
		if pl != spec.len || hi&spec.padHi|lo&spec.padLo != 0 {
			break
		}

		// Then, in one case per kept length (so per type: the lengths
		// differ), record check 1 with the tables of shortcrc.go on the
		// bytes in place at constant table offsets, the content CRC's
		// correction (contentcrc.go), and the fields, as in parsePayload.
		// The fields go straight into the next message slot, which only
		// counts once kept is incremented. It is zeroed in place and the
		// fields stored one by one: a composite literal would be built on
		// the stack and copied, and the copy's wide loads of freshly
		// written narrow fields stall store forwarding.
		m := &msgs[kept]
		*m = Message{}
		var got, corr uint32
		switch pl {
		case 16: // GPS, version 2
			got = ^(crcInit[16] ^ crc4At(tab, q, 16, 0) ^ crc4At(tab, q, 16, 4) ^ crc4At(tab, q, 16, 8) ^ crc4At(tab, q, 16, 12))
			corr = offsetCRC(tab, q, 16)
			m.HdopD = uint8(bits(hi, lo, 111, 8))
			m.Satellites = uint8(bits(hi, lo, 119, 5))
			m.LatE7 = int32(uint32(bits(hi, lo, 26, 32)))
			m.LonE7 = int32(uint32(bits(hi, lo, 58, 32)))
			m.SpeedDkmh = uint16(bits(hi, lo, 90, 12))
			m.HeadingDeg = uint16(bits(hi, lo, 102, 9))
		case 14: // GPS, version 1
			got = ^(crcInit[14] ^ crc4At(tab, q, 14, 0) ^ crc4At(tab, q, 14, 4) ^ crc4At(tab, q, 14, 8) ^ crc2At(tab, q, 14, 12))
			corr = offsetCRC(tab, q, 14)
			m.LatE7 = int32(uint32(bits(hi, lo, 26, 32)))
			m.LonE7 = int32(uint32(bits(hi, lo, 58, 32)))
			m.SpeedDkmh = uint16(bits(hi, lo, 90, 12))
			m.HeadingDeg = uint16(bits(hi, lo, 102, 9))
		case 10: // accel
			got = ^(crcInit[10] ^ crc4At(tab, q, 10, 0) ^ crc4At(tab, q, 10, 4) ^ crc2At(tab, q, 10, 8))
			corr = offsetCRC(tab, q, 10)
			m.XMg = int16(uint16(bits(hi, lo, 26, 16)))
			m.YMg = int16(uint16(bits(hi, lo, 42, 16)))
			m.ZMg = int16(uint16(bits(hi, lo, 58, 16)))
		case 7: // engine
			got = ^(crcInit[7] ^ crc4At(tab, q, 7, 0) ^ crc2At(tab, q, 7, 4) ^ crc1At(tab, q, 7, 6))
			corr = offsetCRC(tab, q, 7)
			m.RPM = uint16(bits(hi, lo, 26, 14))
			m.CoolantRaw = uint8(bits(hi, lo, 40, 8))
			m.FuelPct = uint8(bits(hi, lo, 48, 7))
		case 6: // battery
			got = ^(crcInit[6] ^ crc4At(tab, q, 6, 0) ^ crc2At(tab, q, 6, 4))
			corr = offsetCRC(tab, q, 6)
			m.Millivolts = uint16(bits(hi, lo, 26, 16))
		case 5: // event
			got = ^(crcInit[5] ^ crc4At(tab, q, 5, 0) ^ crc1At(tab, q, 5, 4))
			corr = offsetCRC(tab, q, 5)
			m.Code = uint8(bits(hi, lo, 26, 8))
			m.Severity = uint8(bits(hi, lo, 34, 3))
		default: // no kept type has this length; never reached after the spec check
			break loop
		}
		if got != sum {
			break
		}

		// Record check 2: linear probing for the CRC (see Decoder.seen). A
		// free slot before any equal key means no earlier record has this
		// CRC, so this one is new: it takes the slot. An equal key (a
		// duplicate, or a CRC collision) is for Decoder.record.
		j := (uint64(sum) * mult) >> (shift & 63)
		for {
			j &= uint64(len(table) - 1)
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

		// Kept.
		offset := uint32(hi>>38) & MaxTimeOffsetMs
		m.Type = typ
		m.OffsetMs = offset
		m.TimeMs = base + uint64(offset)
		m.CRC = sum
		m.ContentCRC = sum ^ corr
		kept++
		off = end
	}
	return off, kept
}
