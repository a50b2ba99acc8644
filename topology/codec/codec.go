// Package codec holds the one contract between a topology and the bytes of
// its records: Codec. It imports nothing, so that packages of codecs can
// name the contract without depending on the framework.
package codec

// Codec encodes and decodes values of one type to and from record bytes.
//
// Implementations must be safe for concurrent use and must never panic on
// hostile input: Decode returns an error instead.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}
