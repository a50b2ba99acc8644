package protocol

// The content CRC of a payload is the CRC of the payload with its 22
// time-offset bits set to zero. CRC-32C is affine over GF(2): for payloads
// of one length, CRC(x XOR y) = CRC(x) XOR CRC(y) XOR CRC(zeros). So the
// content CRC is the record CRC XOR the contribution of the offset bits,
// which are in the payload's first four bytes (bits 4-25, counted from the
// most significant bit of byte 0). Each byte's contribution is a lookup in
// the short-CRC tables (shortcrc.go), which the record loop has just used
// for the record CRC: no second CRC pass per message and no table of its
// own. (Decoder.record, the reference path, computes the content CRC by its
// definition; the tests check that the two agree.)

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
