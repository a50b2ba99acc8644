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
// it is no duplicate), and the right length and padding for a known type
// and version: it is kept, with exactly the fields, times and CRCs that
// record would give it. fastRecords leaves the table untouched for the
// record it stops at.
func (d *Decoder) fastRecords(r *records, i, n int) int {
	if d.hashMode {
		return i
	}
	// Every record fastLoop decodes is kept, so record i's message goes
	// to msgs[kept + (i-i0)]: msgs is cut to end with record n's, and the
	// loop counts kept alone.
	kept0 := r.kept
	r.off, r.kept = fastLoop(&r.fast, r.body[:cap(r.body)], r.off, r.msgs[:kept0+n-i], kept0, r.crcTables)
	return i + r.kept - kept0
}

// The padding masks of the kept types (record check 4), in the 128-bit
// big-endian value hi:lo of a payload's first 16 bytes: the bits after the
// type's last field up to its payload's end. TestFastPathConstants checks
// them against payloadSpecs.
const (
	padGPS2    = 1<<(128-124) - 1                       // lo: bits 124-127
	padGPS1    = 1 << (128 - 112)                       // lo: bit 111
	padAccel   = (1<<(128-74) - 1) &^ (1<<(128-80) - 1) // lo: bits 74-79
	padEngine  = 1 << (64 - 56)                         // hi: bit 55
	padEvent   = (1<<(64-37) - 1) &^ (1<<(64-40) - 1)   // hi: bits 37-39
	padBattery = (1<<(64-42) - 1) &^ (1<<(64-48) - 1)   // hi: bits 42-47
)

// The content CRCs of the kept types' payloads with every bit but the type
// zero: the CRC of [type<<4, 0, 0, ...] of the type's length. A payload's
// content CRC is that constant XOR the contributions of its other content
// bytes (contentCRC); TestFastPathConstants checks them.
const (
	contentBaseGPS2    = 0x5456b255
	contentBaseGPS1    = 0x2443cea4
	contentBaseAccel   = 0xfd5a2aa2
	contentBaseEngine  = 0x1a3e1376
	contentBaseEvent   = 0x72231c9b
	contentBaseBattery = 0x9922175f
)

// loopState holds fastLoop's invariants that are used once or twice per
// record. Read from memory where they are used (most loads fold into the
// instruction that uses them), they leave the registers to the values used
// throughout; passed as arguments, they were kept in registers, spilled
// within the record and reloaded on every iteration. It is set once per
// package (Decoder.newRecords): a package whose records mostly take the
// reference path calls fastRecords once per record.
type loopState struct {
	bodyLen int
	v1      bool   // a version 1 package
	base    uint64 // base_time_ms
	table   []slot // Decoder.table
	mask    uint64 // len(table) - 1
	mult    uint64 // Decoder.mult
}

// fastLoop is the loop of fastRecords. The values used throughout the loop
// are passed in registers (the offset, the messages, the CRC tables), the
// others in st. win is the body with its spare capacity: decompress leaves
// 16 bytes after the body, so that the last payloads too are loaded 16
// bytes at a time; the records' framing is checked against st.bodyLen. It
// writes the messages from msgs[kept] on and returns the offset of the
// first record it did not decode and the new count of kept messages.
func fastLoop(st *loopState, win []byte, off int, msgs []Message, kept int, tab *[16][256]uint32) (int, int) {
	msgs = msgs[kept:]
	// With cap(win) == len(win) a slice of win is checked against len
	// alone, and with one nil check of tab here none is left in the loop.
	win = win[:len(win):len(win)]
	_ = tab[0]
	k := 0
loop:
	for ; k < len(msgs); k++ {
		// The record's header and its payload's first 16 bytes, in place:
		// one bounds check, then constant offsets.
		if off+RecordHeaderLen+16 > len(win) {
			break
		}
		rec := (*[RecordHeaderLen + 16]byte)(win[off : off+RecordHeaderLen+16])
		end := off + RecordHeaderLen + int(binary.BigEndian.Uint16(rec[0:]))
		if end > st.bodyLen {
			break
		}
		pl := end - off - RecordHeaderLen
		sum := binary.BigEndian.Uint32(rec[2:])
		// The payload as bytes q and as a 128-bit big-endian value hi:lo.
		// The bytes past the payload are left as they are: the padding
		// masks and the fields stop at its end.
		q := (*[16]byte)(rec[RecordHeaderLen:])
		hi := binary.BigEndian.Uint64(q[0:])
		lo := binary.BigEndian.Uint64(q[8:])
		typ := MsgType(hi >> 60)

		// The message goes straight into the next slot, which only counts
		// once the loop moves past it. It is zeroed in place and the
		// fields stored one by one: a composite literal would be built on
		// the stack and copied, and the copy's wide loads of freshly
		// written narrow fields stall store forwarding. Each field is
		// stored as soon as it is known, before the next is computed:
		// fewer values live at once, fewer spills. (The order of the
		// checks does not matter here: the fast path keeps a record only
		// if it passes all, and touches nothing that counts for one it
		// leaves.)
		m := &msgs[k]
		*m = Message{}
		offset := hi >> 38 & MaxTimeOffsetMs
		m.Type = typ
		m.OffsetMs = uint32(offset)
		m.TimeMs = st.base + offset
		m.CRC = sum
		// One case per kept type (GPS with a branch on the version),
		// tested in the order of their frequency in typical packages:
		// fewer tests than the jump table a switch compiles to. Each runs
		// record checks 3-4 (the length and padding, constants here),
		// stores the fields, as in parsePayload, and computes the content
		// CRC (the CRC of the payload with the offset bits zeroed) and
		// the offset bits' contribution to the record CRC
		// (contentcrc.go), with the tables of shortcrc.go on the bytes in
		// place at constant table offsets.
		var content, offs uint32
		switch {
		case typ == TypeGPS:
			m.LatE7 = int32(uint32(bits(hi, lo, 26, 32)))
			m.LonE7 = int32(uint32(bits(hi, lo, 58, 32)))
			m.SpeedDkmh = uint16(bits(hi, lo, 90, 12))
			m.HeadingDeg = uint16(bits(hi, lo, 102, 9))
			// Version 2 adds 2 bytes: the HDOP and the satellites.
			if !st.v1 {
				if pl != 16 || lo&padGPS2 != 0 {
					break loop
				}
				m.HdopD = uint8(bits(hi, lo, 111, 8))
				m.Satellites = uint8(bits(hi, lo, 119, 5))
				content = contentBaseGPS2 ^ contentCRC(tab, q, 16) ^ crc4At(tab, q, 16, 4) ^ crc4At(tab, q, 16, 8) ^ crc4At(tab, q, 16, 12)
				offs = offsetCRC(tab, q, 16)
			} else {
				if pl != 14 || lo&padGPS1 != 0 {
					break loop
				}
				content = contentBaseGPS1 ^ contentCRC(tab, q, 14) ^ crc4At(tab, q, 14, 4) ^ crc4At(tab, q, 14, 8) ^ crc2At(tab, q, 14, 12)
				offs = offsetCRC(tab, q, 14)
			}
		case typ == TypeAccel:
			if pl != 10 || lo&padAccel != 0 {
				break loop
			}
			m.XMg = int16(uint16(bits(hi, lo, 26, 16)))
			m.YMg = int16(uint16(bits(hi, lo, 42, 16)))
			m.ZMg = int16(uint16(bits(hi, lo, 58, 16)))
			content = contentBaseAccel ^ contentCRC(tab, q, 10) ^ crc4At(tab, q, 10, 4) ^ crc2At(tab, q, 10, 8)
			offs = offsetCRC(tab, q, 10)
		case typ == TypeEngine:
			if pl != 7 || hi&padEngine != 0 {
				break loop
			}
			m.RPM = uint16(bits(hi, lo, 26, 14))
			m.CoolantRaw = uint8(bits(hi, lo, 40, 8))
			m.FuelPct = uint8(bits(hi, lo, 48, 7))
			content = contentBaseEngine ^ contentCRC(tab, q, 7) ^ crc2At(tab, q, 7, 4) ^ crc1At(tab, q, 7, 6)
			offs = offsetCRC(tab, q, 7)
		case typ == TypeEvent:
			if pl != 5 || hi&padEvent != 0 {
				break loop
			}
			m.Code = uint8(bits(hi, lo, 26, 8))
			m.Severity = uint8(bits(hi, lo, 34, 3))
			content = contentBaseEvent ^ contentCRC(tab, q, 5) ^ crc1At(tab, q, 5, 4)
			offs = offsetCRC(tab, q, 5)
		case typ == TypeBattery:
			if st.v1 || pl != 6 || hi&padBattery != 0 { // version 2 only
				break loop
			}
			m.Millivolts = uint16(bits(hi, lo, 26, 16))
			content = contentBaseBattery ^ contentCRC(tab, q, 6) ^ crc2At(tab, q, 6, 4)
			offs = offsetCRC(tab, q, 6)
		default: // an unknown type: for Decoder.record
			break loop
		}
		m.ContentCRC = content

		// Record check 1: the record CRC is the content CRC with the
		// offset bits' contribution (contentcrc.go).
		if content^offs != sum {
			break
		}

		// Record check 2: linear probing for the CRC (see Decoder.seen). A
		// free slot before any equal key means no earlier record has this
		// CRC, so this one is new: it takes the slot. An equal key (a
		// duplicate, or a CRC collision) is for Decoder.record.
		j := slotIndex(sum, st.mult)
		for {
			j &= st.mask
			e := st.table[j]
			if e == 0 {
				break
			}
			if e.key() == sum {
				break loop
			}
			j++
		}
		st.table[j] = slot(uint64(sum)<<32 | uint64(off+1))

		off = end
	}
	return off, kept + k
}
