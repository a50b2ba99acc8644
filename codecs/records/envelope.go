package records

import "github.com/watershed-io/watershed/topology/deadletter"

// Header is one Kafka record header, kept in a dead-letter envelope: the
// framework's deadletter.Header.
type Header = deadletter.Header

// Envelope is a dead-letter record, the framework's deadletter.Envelope:
// a record that a stage could not process, with where it came from and why
// it failed.
type Envelope = deadletter.Envelope

// EnvelopeCodec encodes and decodes Envelope records: the framework's
// deadletter.Codec. Times decode in UTC.
type EnvelopeCodec = deadletter.Codec

// envelopeVersion is the newest Envelope format (see deadletter.Version).
const envelopeVersion = deadletter.Version

// AppendEnvelope appends the record bytes of e to b.
func AppendEnvelope(b []byte, e Envelope) []byte { return deadletter.Append(b, e) }
