// Package records holds the binary record formats that flow between
// watershed's stages: Batch (the decoded messages of one device package),
// Reading and Readings (normalized readings), and Envelope (dead letters).
//
// Every record starts with a format-version byte. A writer always writes the
// newest version; a reader reads every version up to the newest it knows, so
// records written before an upgrade stay readable after it. A reader refuses
// versions newer than it knows with an error wrapping ErrVersion.
//
// Integers are encoding/binary varints; byte strings and strings carry a
// uvarint length. Decoding never panics and never allocates more than the
// record's own size suggests: every count read from the bytes is checked
// against the bytes that remain before anything is allocated.
//
// Each format has a zero-size codec type (EnvelopeCodec, BatchCodec, ...)
// that implements codecs.Codec for it.
package records
