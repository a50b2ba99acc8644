package records

import (
	"encoding/binary"
	"time"
)

// Header is one Kafka record header, kept in a dead-letter envelope.
type Header struct {
	Key   string
	Value []byte
}

// Envelope is a dead-letter record: a record that a stage could not process,
// with where it came from and why it failed. Key, Value and Headers are the
// original record's, unchanged.
type Envelope struct {
	// Stage names the stage that gave up on the record.
	Stage string
	// Reason is a short machine-readable reason (a protocol reason word
	// such as "header_crc", or a stage's own).
	Reason string
	// Error is the human-readable error text.
	Error string
	// Topic, Partition and Offset locate the original record.
	Topic     string
	Partition int32
	Offset    int64
	// Key and Value are the original record's bytes; nil and empty differ.
	Key   []byte
	Value []byte
	// Headers are the original record's headers.
	Headers []Header
	// Timestamp is the original record's time.
	Timestamp time.Time
	// Attempts counts the attempts made to process the record.
	Attempts int
	// FirstFailure and LastFailure are when the first and last attempts
	// failed.
	FirstFailure time.Time
	LastFailure  time.Time
}

// envelopeVersion is the newest Envelope format this package writes and
// reads.
//
// Version 1: version byte, then Stage, Reason, Error, Topic (uvarint length
// + bytes), Partition (varint), Offset (varint), Key, Value (uvarint len+1
// + bytes, 0 = nil), header count (uvarint) and per header its Key (string)
// and Value (nullable bytes), Timestamp, FirstFailure, LastFailure (each
// varint Unix seconds + uvarint nanoseconds), Attempts (varint).
const envelopeVersion = 1

// EnvelopeCodec encodes and decodes Envelope records. It implements
// codecs.Codec[Envelope]. Times decode in UTC.
type EnvelopeCodec struct{}

// Encode returns the record bytes of e.
func (EnvelopeCodec) Encode(e Envelope) ([]byte, error) {
	return AppendEnvelope(nil, e), nil
}

// AppendEnvelope appends the record bytes of e to b.
func AppendEnvelope(b []byte, e Envelope) []byte {
	b = append(b, envelopeVersion)
	b = appendString(b, e.Stage)
	b = appendString(b, e.Reason)
	b = appendString(b, e.Error)
	b = appendString(b, e.Topic)
	b = binary.AppendVarint(b, int64(e.Partition))
	b = binary.AppendVarint(b, e.Offset)
	b = appendNullableBytes(b, e.Key)
	b = appendNullableBytes(b, e.Value)
	b = binary.AppendUvarint(b, uint64(len(e.Headers)))
	for _, h := range e.Headers {
		b = appendString(b, h.Key)
		b = appendNullableBytes(b, h.Value)
	}
	b = appendTime(b, e.Timestamp)
	b = appendTime(b, e.FirstFailure)
	b = appendTime(b, e.LastFailure)
	return binary.AppendVarint(b, int64(e.Attempts))
}

// Decode parses record bytes written by any version of Encode. The result
// shares no memory with b.
func (EnvelopeCodec) Decode(b []byte) (Envelope, error) {
	var e Envelope
	r := reader{b: b}
	r.version("envelope", envelopeVersion)
	e.Stage = r.string("stage")
	e.Reason = r.string("reason")
	e.Error = r.string("error")
	e.Topic = r.string("topic")
	e.Partition = r.int32v("partition")
	e.Offset = r.varint("offset")
	e.Key = r.nullableBytes("key")
	e.Value = r.nullableBytes("value")
	// A header takes at least 2 bytes (empty key, nil value).
	if n := r.length("header count", 2); n > 0 {
		e.Headers = make([]Header, n)
		for i := range e.Headers {
			e.Headers[i].Key = r.string("header key")
			e.Headers[i].Value = r.nullableBytes("header value")
		}
	}
	e.Timestamp = r.time("timestamp")
	e.FirstFailure = r.time("first failure")
	e.LastFailure = r.time("last failure")
	e.Attempts = int(r.varint("attempts"))
	if err := r.finish("envelope"); err != nil {
		return Envelope{}, err
	}
	return e, nil
}
