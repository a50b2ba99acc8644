package protocol

// The content CRC of a payload is the CRC of the payload with its 22
// time-offset bits set to zero. CRC-32C is affine over GF(2) (shortcrc.go):
// a payload's CRC is NOT(crcInit[n]) XOR the contribution of each byte, and
// a byte's contribution is linear in its bits. So the fast path (records.go)
// splits the bytes that hold the offset (bits 4-25, counted from the most
// significant bit of byte 0) into their offset bits and their other bits:
// the content CRC takes the others (the type nibble of byte 0 is constant
// per case, folded into a constant), and the record CRC is the content CRC
// XOR the offset bits' contribution. Each payload byte is looked up once,
// and byte 3 twice, in the short-CRC tables: no second CRC pass per message
// and no table of its own. (Decoder.record, the reference path, computes
// the content CRC by its definition; the tests check that the two agree.)

// contentCRC returns the contribution of the content bits of byte 3 (its
// last 6 bits) to the CRC of the payload of length n (4 <= n <= 16) that
// starts at q[0]; t is &crcTables. Bytes 1 and 2 are all offset, and byte
// 0's content is its type. Called with a constant n, it compiles to one
// lookup at a constant offset from t.
func contentCRC(t *[16][256]uint32, q *[16]byte, n int) uint32 {
	return t[n-4][q[3]&0x3f]
}

// offsetCRC returns the contribution of the offset bits to the CRC of the
// payload of length n (4 <= n <= 16) that starts at q[0]; t is &crcTables.
// The content CRC is the record CRC XOR offsetCRC. Called with a constant
// n, it compiles to four lookups at constant offsets from t.
func offsetCRC(t *[16][256]uint32, q *[16]byte, n int) uint32 {
	// Byte j takes t[n-1-j].
	return t[n-1][q[0]&0x0f] ^ // byte 0: the type on top, then the offset
		t[n-2][q[1]] ^
		t[n-3][q[2]] ^
		t[n-4][q[3]&0xc0] // byte 3: the offset's last 2 bits on top
}
