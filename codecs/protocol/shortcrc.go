package protocol

// Short-payload CRC-32C without a function call.
//
// Every kept payload is 5 to 16 bytes. hash/crc32 computes CRC-32C with the
// SSE4.2 CRC32 instruction, which needs two instructions for 16 bytes, but
// every call goes through Update, an indirect call and an assembly routine
// that cannot be inlined: about 85 instructions and 7 ns per call on the
// benchmark machine whatever the length, 40 calls per typical package,
// more than twice the whole snappy + body-CRC baseline. And as Go has no
// callee-saved registers, a call in the record loop also spills and
// reloads the loop's state. So the fast path (records.go) computes the CRC
// of a payload of a kept length with one table lookup per byte, inlined.
//
// CRC-32C is affine over GF(2). With reg(S, x) the CRC register (before the
// final inversion) after bytes x starting from register S,
//
//	reg(S, x) = reg(S, 0^n) XOR reg(0, x)   for x of length n, and
//	reg(0, x) = XOR over j of reg(0, x_j followed by n-1-j zero bytes),
//
// so CRC(x) = NOT(crcInit[n] XOR XOR_j crcTables[n-1-j][x_j]): each byte's
// contribution depends only on its value and its distance from the end.
// The content CRC's correction comes from the same tables (offsetCRC).

// crcTables[k][b] is reg(0, b followed by k zero bytes), for k = 0..15;
// 16 KiB, computed once at package initialisation and only read
// afterwards.
var crcTables = makeCRCTables()

// crcInit[n] is reg(0xffffffff, n zero bytes): the initial register's
// contribution to the CRC of an n-byte input.
var crcInit = makeCRCInit()

func makeCRCTables() [16][256]uint32 {
	var t [16][256]uint32
	for b := range 256 {
		r := castagnoli[b] // one byte b from a zero register
		for k := range 16 {
			t[k][b] = r
			r = castagnoli[byte(r)] ^ r>>8 // one more zero byte
		}
	}
	return t
}

func makeCRCInit() [17]uint32 {
	var c [17]uint32
	r := ^uint32(0)
	for n := range c {
		c[n] = r
		r = castagnoli[byte(r)] ^ r>>8
	}
	return c
}

// crc4At returns the contribution of bytes q[j..j+3] to the CRC of the
// payload of length n that starts at q[0] (j+4 <= n <= 16); crc2At and
// crc1At are the same for q[j..j+1] and q[j]. t is &crcTables, passed in
// a register: Go addresses a global with an index register by an extra
// LEAQ per load. The CRC of the payload is NOT(crcInit[n] XOR the
// contributions of all its bytes). Called with constants, as the fast
// path does for each kept length, each lookup is one instruction at a
// constant offset from t; the partial XORs are independent, so they do not
// wait on each other.
func crc4At(t *[16][256]uint32, q *[16]byte, n, j int) uint32 {
	return t[n-1-j][q[j]] ^ t[n-2-j][q[j+1]] ^ t[n-3-j][q[j+2]] ^ t[n-4-j][q[j+3]]
}

func crc2At(t *[16][256]uint32, q *[16]byte, n, j int) uint32 {
	return t[n-1-j][q[j]] ^ t[n-2-j][q[j+1]]
}

func crc1At(t *[16][256]uint32, q *[16]byte, n, j int) uint32 {
	return t[n-1-j][q[j]]
}
