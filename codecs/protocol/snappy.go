package protocol

import "github.com/golang/snappy"

// The snappy block codec used for package bodies. It is
// github.com/golang/snappy, chosen by measurement over
// github.com/klauspost/compress/snappy (see docs/benchmarks.md): the
// klauspost Decode delegates to the S2 decoder, which accepts S2 extensions
// that are corrupt standard snappy (a copy with offset 0), and its strict
// standard decoder is slower than golang/snappy's assembly one.

// snappyDecode decodes the snappy block src into dst, which must have
// capacity for the length its preamble announces.
func snappyDecode(dst, src []byte) ([]byte, error) { return snappy.Decode(dst, src) }

// snappyEncode appends nothing: it returns the snappy block encoding of src,
// using dst if it is large enough.
func snappyEncode(dst, src []byte) []byte { return snappy.Encode(dst, src) }

// snappyMaxEncodedLen is the largest encoding of n bytes, or -1.
func snappyMaxEncodedLen(n int) int { return snappy.MaxEncodedLen(n) }
