package protocol

// Short-payload CRC-32C without a function call.
//
// Nearly every payload is 5 to 16 bytes. hash/crc32 computes CRC-32C with
// the SSE4.2 CRC32 instruction, which needs two instructions for 16 bytes,
// but every call goes through Update, an indirect call and an assembly
// routine that cannot be inlined: some 85 instructions and about 7 ns per
// call on the benchmark machine whatever the length, 40 calls per typical
// package, more than twice the whole snappy + body-CRC baseline. And as Go
// has no callee-saved registers, each call in the record loop also spills
// and reloads the loop's state. The decoder has already loaded a payload's
// first 16 bytes into two registers to parse it, so it computes the CRC of
// a payload of at most 16 bytes from those registers with one table lookup
// per byte, inlined into the record loop.
//
// CRC-32C is affine over GF(2). With reg(S, x) the CRC register (before the
// final inversion) after bytes x starting from register S,
//
//	reg(S, x) = reg(S, 0^n) XOR reg(0, x)   for x of length n, and
//	reg(0, x) = XOR over j of reg(0, x_j followed by n-1-j zero bytes),
//
// so CRC(x) = NOT(crcInit[n] XOR XOR_j T_{n-1-j}[x_j]), where T_k[b] =
// reg(0, b followed by k zero bytes): each byte's contribution depends only
// on its value and its distance from the end. The content CRC's correction
// comes from the same tables (contentCRC).

// crcTables holds T_k at index 15+k (k = 0..15), and all-zero tables at
// indexes 0..14. For a payload of length n, the 16 tables from index n-1
// on give payload byte j (j = 0..15) the table T_{n-1-j}: the right one for
// j < n, and a zero table for the bytes past the payload, which are masked
// to zero first so that they touch a single cache line of each zero table.
// 31 KiB, computed once at package initialisation and only read afterwards.
var crcTables = makeCRCTables()

// crcInit[n] is reg(0xffffffff, n zero bytes): the initial register's
// contribution to the CRC of an n-byte input.
var crcInit = makeCRCInit()

// payloadMaskHi[n], payloadMaskLo[n] keep the first n bytes (n <= 16) of a
// 128-bit big-endian value hi:lo.
var payloadMaskHi, payloadMaskLo = makePayloadMasks()

func makeCRCTables() [31][256]uint32 {
	var t [31][256]uint32
	for b := range 256 {
		r := castagnoli[b] // one byte b from a zero register
		for k := range 16 {
			t[15+k][b] = r
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

func makePayloadMasks() (hi, lo [17]uint64) {
	for n := 1; n <= 16; n++ {
		if n <= 8 {
			hi[n] = ^uint64(0) << (64 - 8*n)
		} else {
			hi[n] = ^uint64(0)
			lo[n] = ^uint64(0) << (128 - 8*n)
		}
	}
	return hi, lo
}

// crcTablesFor[n] (1 <= n <= 16) is the slice of crcTables from index n-1
// on, as a pointer: the 16 tables for a payload of length n. (Loading the
// pointer, rather than converting a slice of crcTables, gives the compiler
// a plain base register to which it adds each table's constant offset.)
// The CRC of such a payload, its bytes the first n bytes of the 128-bit
// big-endian value hi:lo and the other bytes of hi:lo zero, is
//
//	^(crcInit[n] ^ crc4(u, 0, lo) ^ crc4(u, 4, lo>>32) ^
//		crc4(u, 8, hi) ^ crc4(u, 12, hi>>32))
//
// with u = crcTablesFor[n]: byte j of hi:lo (from the most significant)
// takes table 15-j. The record loop writes it out, as a function it would
// exceed the compiler's inlining budget; the four partial XORs are
// independent, so that they do not wait on each other.
var crcTablesFor = makeCRCTablesFor(&crcTables)

func makeCRCTablesFor(t *[31][256]uint32) [17]*[16][256]uint32 {
	var f [17]*[16][256]uint32
	for n := 1; n <= 16; n++ {
		f[n] = (*[16][256]uint32)(t[n-1 : n+15])
	}
	return f
}

// crc4 returns the XOR of u[k+i][byte i of w], byte 0 the least
// significant: the contribution of 4 payload bytes. (Four bytes, not
// eight, to stay within the compiler's inlining budget; called with a
// constant k, so that each table's offset is a constant.)
func crc4(u *[16][256]uint32, k int, w uint32) uint32 {
	return u[k][byte(w)] ^ u[k+1][byte(w>>8)] ^ u[k+2][byte(w>>16)] ^ u[k+3][byte(w>>24)]
}
