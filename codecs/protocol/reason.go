package protocol

import (
	"fmt"
)

// Reason is why a package or a record was rejected, as named by
// PROTOCOL.md. Its String method gives the spec's word ("header_crc",
// "count_mismatch", ...), which is also its text (and so JSON) form.
// The zero Reason, ReasonNone, is never a rejection reason.
//
// The numeric values are stored in pipeline records (codecs/records): they
// must never change; new reasons are added at the end.
type Reason uint8

// Reasons, in the order PROTOCOL.md introduces them.
const (
	// ReasonNone is the zero Reason: no rejection.
	ReasonNone Reason = iota

	// Package checks 1-2 (the header cannot be trusted).

	// ReasonTruncated: fewer bytes than the header needs (checks 1-2), or
	// than header + body_len (check 4).
	ReasonTruncated
	// ReasonBadMagic: the first two bytes are not "WS".
	ReasonBadMagic
	// ReasonUnsupportedVersion: version is neither 1 nor 2.
	ReasonUnsupportedVersion
	// ReasonHeaderCRC: the header CRC does not match.
	ReasonHeaderCRC

	// Package checks 3-4 (the header is intact but not acceptable).

	// ReasonBadFlags: reserved flag bits are set.
	ReasonBadFlags
	// ReasonZeroDevice: device_id is 0.
	ReasonZeroDevice
	// ReasonBadCount: message_count is 0 or over 4096.
	ReasonBadCount
	// ReasonTooLarge: body_len, or the decompressed length that the snappy
	// preamble announces, is over 1,048,576.
	ReasonTooLarge
	// ReasonTrailingBytes: more bytes than header + body_len.
	ReasonTrailingBytes

	// Package checks 5-6 (the body).

	// ReasonBadCompression: the snappy body is corrupt (an empty body and a
	// bad preamble included).
	ReasonBadCompression
	// ReasonCountMismatch: the records do not fill the body exactly with
	// message_count records.
	ReasonCountMismatch

	// Record checks.

	// ReasonMessageCRC: a record's CRC does not match its payload.
	ReasonMessageCRC
	// ReasonBadLength: a payload shorter than its prefix, of the wrong
	// length for its type and version, or with non-zero padding bits.
	ReasonBadLength
	// ReasonUnknownType: a type not defined for the package's version.
	ReasonUnknownType

	// Validation (the stage after decoding; the decoder never uses these).

	// ReasonOutOfRange: a decoded field breaks a physical limit.
	ReasonOutOfRange
	// ReasonStaleTimestamp: the message time is before 2020-01-01.
	ReasonStaleTimestamp
	// ReasonFutureTimestamp: the message time is more than 5 minutes after
	// the ingest edge received the package, or base + offset overflowed.
	ReasonFutureTimestamp

	reasonCount
)

// reasonWords are the spec's words, indexed by Reason.
var reasonWords = [reasonCount]string{
	ReasonNone:               "none",
	ReasonTruncated:          "truncated",
	ReasonBadMagic:           "bad_magic",
	ReasonUnsupportedVersion: "unsupported_version",
	ReasonHeaderCRC:          "header_crc",
	ReasonBadFlags:           "bad_flags",
	ReasonZeroDevice:         "zero_device",
	ReasonBadCount:           "bad_count",
	ReasonTooLarge:           "too_large",
	ReasonTrailingBytes:      "trailing_bytes",
	ReasonBadCompression:     "bad_compression",
	ReasonCountMismatch:      "count_mismatch",
	ReasonMessageCRC:         "message_crc",
	ReasonBadLength:          "bad_length",
	ReasonUnknownType:        "unknown_type",
	ReasonOutOfRange:         "out_of_range",
	ReasonStaleTimestamp:     "stale_timestamp",
	ReasonFutureTimestamp:    "future_timestamp",
}

// String returns the spec's word for r, or "reason(N)" for an unknown value.
func (r Reason) String() string {
	if r < reasonCount {
		return reasonWords[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Valid reports whether r is a known, non-zero Reason.
func (r Reason) Valid() bool { return r > ReasonNone && r < reasonCount }

// ParseReason returns the Reason whose word is s.
func ParseReason(s string) (Reason, error) {
	for r := ReasonNone + 1; r < reasonCount; r++ {
		if reasonWords[r] == s {
			return r, nil
		}
	}
	return ReasonNone, fmt.Errorf("protocol: unknown reason %q", s)
}

// MarshalText returns the spec's word for r.
func (r Reason) MarshalText() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("protocol: cannot marshal invalid reason %d", uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText parses the spec's word into r.
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := ParseReason(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// PackageError rejects a whole package. Use errors.As to get it from an
// error returned by Decode, Decoder.Decode or CheckHeader.
type PackageError struct {
	// Reason is the spec's reason for the rejection; never ReasonNone.
	Reason Reason
	// Check is the number (1-6) of the package check in PROTOCOL.md that
	// failed. Checks 1-2 mean the header cannot be trusted (the ingest edge
	// answers HTTP 400); checks 3-6 mean the header is intact (its
	// DeviceID and PackageSeq are genuine) but the package is not
	// acceptable (HTTP 422 at the edge for checks 3-4).
	Check int
	// Detail says more, for people; it is not part of the protocol.
	Detail string
}

// Error returns "protocol: REASON: DETAIL".
func (e *PackageError) Error() string {
	if e.Detail == "" {
		return "protocol: " + e.Reason.String()
	}
	return "protocol: " + e.Reason.String() + ": " + e.Detail
}

// HeaderTrusted reports whether the header passed checks 1-2 (magic,
// version, length and header CRC), so its fields are what the device sent.
func (e *PackageError) HeaderTrusted() bool { return e.Check >= 3 }

// reject returns a *PackageError. Detail formatting happens only on this
// error path.
func reject(check int, r Reason, format string, args ...any) *PackageError {
	return &PackageError{Reason: r, Check: check, Detail: fmt.Sprintf(format, args...)}
}
