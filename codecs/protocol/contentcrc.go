package protocol

// The content CRC of a payload is the CRC of the payload with its 22
// time-offset bits set to zero. CRC-32C is affine over GF(2): for payloads
// of one length, CRC(x XOR y) = CRC(x) XOR CRC(y) XOR CRC(zeros). So the
// content CRC is the record CRC XOR the contribution of the offset bits,
// which depends only on the offset value and the payload length, and is
// looked up in three byte-indexed tables per kept payload length instead of
// computing a second CRC per message.

// contentLens are the payload lengths of kept messages.
var contentLens = [...]int{5, 6, 7, 10, 14, 16}

// contentLenIndex maps a payload length (0..16) to its table + 1, or 0.
var contentLenIndex = [17]uint8{5: 1, 6: 2, 7: 3, 10: 4, 14: 5, 16: 6}

// offsetCRCTables[l][g][v] is the CRC contribution of the offset bits
// 8g..8g+7 having the value v, in a payload of length contentLens[l]. It is
// computed once at package initialisation and only read afterwards.
var offsetCRCTables = makeOffsetCRCTables()

func makeOffsetCRCTables() *[len(contentLens)][3][256]uint32 {
	var t [len(contentLens)][3][256]uint32
	for l, n := range contentLens {
		p := make([]byte, n)
		zero := crc(p)
		var bit [22]uint32
		for k := range bit {
			// Offset bit k (0 = least significant) is payload bit 25-k,
			// counted MSB-first from the first byte.
			pos := 25 - k
			p[pos/8] = 0x80 >> (pos % 8)
			bit[k] = crc(p) ^ zero
			p[pos/8] = 0
		}
		for g := range 3 {
			for v := range 256 {
				var x uint32
				for j := range 8 {
					if k := 8*g + j; v>>j&1 == 1 && k < 22 {
						x ^= bit[k]
					}
				}
				t[l][g][v] = x
			}
		}
	}
	return &t
}

// contentCRC returns the content CRC of a kept payload of length n, time
// offset offset and CRC sum.
func contentCRC(sum uint32, n int, offset uint32) uint32 {
	if uint(n) >= uint(len(contentLenIndex)) || contentLenIndex[n] == 0 {
		return 0 // not a kept payload length; never happens
	}
	t := &offsetCRCTables[contentLenIndex[n]-1]
	return sum ^ t[0][offset&0xff] ^ t[1][offset>>8&0xff] ^ t[2][offset>>16&0xff]
}
