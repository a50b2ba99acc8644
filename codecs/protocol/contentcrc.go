package protocol

// The content CRC of a payload is the CRC of the payload with its 22
// time-offset bits set to zero. CRC-32C is affine over GF(2): for payloads
// of one length, CRC(x XOR y) = CRC(x) XOR CRC(y) XOR CRC(zeros). So the
// content CRC is the record CRC XOR the contribution of the offset bits,
// which are in the payload's first four bytes (bits 4-25, counted from the
// most significant bit of byte 0). Each byte's contribution is a lookup in
// the short-CRC tables (shortcrc.go), which the record loop has just used
// for the record CRC: no second CRC pass per message and no table of its
// own. (Decoder.record, the reference path, computes it by the definition;
// the tests check that the two agree.)

// contentCRC returns the content CRC of a payload whose CRC is sum and
// whose first bytes are w; u is crcTablesFor[n] for its length n
// (4 <= n <= 16).
func contentCRC(u *[16][256]uint32, sum uint32, w *[16]byte) uint32 {
	// Payload byte j takes table 15-j.
	return sum ^
		u[15][w[0]&0x0f] ^ // byte 0: the type on top, then the offset
		u[14][w[1]] ^
		u[13][w[2]] ^
		u[12][w[3]&0xc0] // byte 3: the offset's last 2 bits on top
}
