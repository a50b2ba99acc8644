// Package protocol decodes and encodes the device package protocol,
// versions 1 and 2, as PROTOCOL.md specifies it (a copy of the test vectors
// lives in testdata/vectors).
//
// Decoding runs the spec's package checks in order and rejects a whole
// package with a *PackageError carrying its Reason, or accepts it and
// reports, per record, kept messages, intra-package duplicates and rejected
// records. A Decoder reuses its buffers, so that decoding a package
// allocates nothing per message once the Decoder is warm. Decoding is safe
// on hostile input: it never panics, never reads past its input, and never
// allocates more than the spec's limits allow (the announced snappy length
// is checked before the decompression buffer is allocated).
//
// CheckHeader runs only the header checks, for the ingest edge. Encoder and
// Encode build valid packages; AppendPayload, AppendRecord,
// AppendRecordCRC, AppendHeader, AssemblePackage and ResealHeader build
// deliberately malformed ones. MarshalVectorJSON prints a decoding result
// in the test vectors' JSON form.
package protocol
