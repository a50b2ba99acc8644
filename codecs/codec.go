// Package codecs holds the typed codec contract shared by every record that
// flows between watershed's stages, and the codecs for plain values.
//
// The device wire protocol lives in codecs/protocol; the pipeline's record
// formats live in codecs/records.
package codecs

import (
	"encoding/json"
	"fmt"

	"github.com/watershed-io/watershed/topology/codec"
)

// Codec encodes and decodes values of one type to and from record bytes:
// the framework's codec.Codec, which every codec here implements.
//
// Implementations must be safe for concurrent use and must never panic on
// hostile input: Decode returns an error instead.
type Codec[T any] = codec.Codec[T]

// String is the codec for UTF-8 string values.
type String struct{}

// Encode returns the bytes of s.
func (String) Encode(s string) ([]byte, error) { return []byte(s), nil }

// Decode returns b as a string.
func (String) Decode(b []byte) (string, error) { return string(b), nil }

// Bytes is the identity codec for raw byte values.
type Bytes struct{}

// Encode returns b unchanged.
func (Bytes) Encode(b []byte) ([]byte, error) { return b, nil }

// Decode returns a copy of b, since the consumer may reuse its buffer.
func (Bytes) Decode(b []byte) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// JSON is a codec for any JSON-serialisable type. It suits low-volume
// records such as configuration; hot paths use the binary codecs in
// codecs/records.
type JSON[T any] struct{}

// Encode marshals v as JSON.
func (JSON[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codecs: json encode: %w", err)
	}
	return b, nil
}

// Decode unmarshals b into a new T.
func (JSON[T]) Decode(b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("codecs: json decode: %w", err)
	}
	return v, nil
}
