package simulator

import (
	"github.com/watershed-io/watershed/codecs/protocol"
)

// Fault names one kind of fault the simulator injects. Its string is also
// its JSON form in the truth summary.
type Fault string

// Faults that change a whole package's fate.
const (
	// FaultLostACK: a package the edge accepted is sent again, byte for
	// byte, as after a lost acknowledgement.
	FaultLostACK Fault = "lost_ack"
	// FaultRebatch: messages already sent are sent again in a new package
	// with another package_seq and base_time_ms.
	FaultRebatch Fault = "rebatch"
	// FaultIntraDuplicate: a record appears twice in one package.
	FaultIntraDuplicate Fault = "intra_duplicate"
	// FaultWrongToken: the bearer token is not the device's (401).
	FaultWrongToken Fault = "wrong_token"
	// FaultLate: a valid message older than the device's latest message.
	FaultLate Fault = "late"
)

// Malformed-package faults, named by the reason the pipeline gives them.
// The edge answers 400 to the first group, 422 to the second, 413 to
// FaultTooLarge, and 202 to the last group, which the decoder rejects.
const (
	// FaultTruncatedHeader: fewer bytes than the header (400 truncated).
	FaultTruncatedHeader Fault = "truncated_header"
	// FaultBadMagic: the magic is not "WS" (400).
	FaultBadMagic Fault = "bad_magic"
	// FaultUnsupportedVersion: a version other than 1 and 2 (400).
	FaultUnsupportedVersion Fault = "unsupported_version"
	// FaultHeaderCRC: a header byte changed after the CRC (400).
	FaultHeaderCRC Fault = "header_crc"

	// FaultBadFlags: a reserved flag bit set (422).
	FaultBadFlags Fault = "bad_flags"
	// FaultZeroDevice: device_id 0, with device 0's token (422).
	FaultZeroDevice Fault = "zero_device"
	// FaultBadCount: message_count 0 or over 4096 (422).
	FaultBadCount Fault = "bad_count"
	// FaultTrailingBytes: bytes after header + body_len (422).
	FaultTrailingBytes Fault = "trailing_bytes"
	// FaultTruncatedBody: fewer bytes than header + body_len (422
	// truncated).
	FaultTruncatedBody Fault = "truncated_body"
	// FaultTooLarge: body_len over 1,048,576 (413 too_large).
	FaultTooLarge Fault = "too_large"

	// FaultBadCompression: a corrupt snappy body (202, then the decoder
	// rejects it: bad_compression).
	FaultBadCompression Fault = "bad_compression"
	// FaultCountMismatch: one record more or fewer than message_count
	// (202, then count_mismatch).
	FaultCountMismatch Fault = "count_mismatch"
	// FaultSnappyTooLarge: a snappy preamble announcing more than
	// 1,048,576 bytes (202, then too_large).
	FaultSnappyTooLarge Fault = "snappy_too_large"
)

// Record-level faults: one record or message of an otherwise good package,
// dead-lettered with the reason of the same name.
const (
	// FaultMessageCRC: a record whose CRC is wrong.
	FaultMessageCRC Fault = "message_crc"
	// FaultBadLength: a payload one byte too long, shorter than its
	// prefix, or with a padding bit set.
	FaultBadLength Fault = "bad_length"
	// FaultUnknownType: type 5 in a version 1 package, or type 0, 6-15.
	FaultUnknownType Fault = "unknown_type"
	// FaultOutOfRange: a message breaking a physical limit.
	FaultOutOfRange Fault = "out_of_range"
	// FaultStaleTimestamp: a package of messages timed before 2020.
	FaultStaleTimestamp Fault = "stale_timestamp"
	// FaultFutureTimestamp: a message 20-30 minutes ahead of now.
	FaultFutureTimestamp Fault = "future_timestamp"
)

// malformedFaults are the malformed-package faults, cycled through.
var malformedFaults = [...]Fault{
	FaultTruncatedHeader, FaultBadMagic, FaultUnsupportedVersion, FaultHeaderCRC,
	FaultBadFlags, FaultZeroDevice, FaultBadCount, FaultTrailingBytes, FaultTruncatedBody,
	FaultTooLarge, FaultBadCompression, FaultCountMismatch, FaultSnappyTooLarge,
}

// badRecordFaults are the decoder's record rejections, cycled through.
var badRecordFaults = [...]Fault{FaultMessageCRC, FaultBadLength, FaultUnknownType}

// MalformedFaults returns the malformed-package faults in the order a Fleet
// cycles through them.
func MalformedFaults() []Fault { return append([]Fault(nil), malformedFaults[:]...) }

// AllFaults returns every fault kind a Fleet injects with a FaultMix whose
// rates are all above zero.
func AllFaults() []Fault {
	out := []Fault{FaultLostACK, FaultRebatch, FaultIntraDuplicate, FaultWrongToken, FaultLate}
	out = append(out, malformedFaults[:]...)
	out = append(out, badRecordFaults[:]...)
	return append(out, FaultOutOfRange, FaultStaleTimestamp, FaultFutureTimestamp)
}

// malformedExpect returns the edge's expected answer and the package
// rejection reason of a malformed-package fault.
func malformedExpect(f Fault) (code int, reason protocol.Reason) {
	switch f {
	case FaultTruncatedHeader:
		return 400, protocol.ReasonTruncated
	case FaultBadMagic:
		return 400, protocol.ReasonBadMagic
	case FaultUnsupportedVersion:
		return 400, protocol.ReasonUnsupportedVersion
	case FaultHeaderCRC:
		return 400, protocol.ReasonHeaderCRC
	case FaultBadFlags:
		return 422, protocol.ReasonBadFlags
	case FaultZeroDevice:
		return 422, protocol.ReasonZeroDevice
	case FaultBadCount:
		return 422, protocol.ReasonBadCount
	case FaultTrailingBytes:
		return 422, protocol.ReasonTrailingBytes
	case FaultTruncatedBody:
		return 422, protocol.ReasonTruncated
	case FaultTooLarge:
		return 413, protocol.ReasonTooLarge
	case FaultBadCompression:
		return 202, protocol.ReasonBadCompression
	case FaultCountMismatch:
		return 202, protocol.ReasonCountMismatch
	case FaultSnappyTooLarge:
		return 202, protocol.ReasonTooLarge
	}
	return 202, protocol.ReasonNone
}

// FaultMix sets how often each fault is injected. Every rate is a
// probability per generated package, 0 to 1. The zero FaultMix injects
// nothing (every package is valid and sent once); DefaultFaultMix gives
// rates that produce every kind within a few hundred packages.
type FaultMix struct {
	// LostACK: an accepted package is sent again a few packages later.
	LostACK float64
	// Rebatch: one to three messages already sent are added to a package.
	Rebatch float64
	// IntraDuplicate: one or two records of a package are repeated in it.
	IntraDuplicate float64
	// Malformed: the package is replaced by a malformed one; the kinds
	// (MalformedFaults) are used in turn.
	Malformed float64
	// BadRecord: a corrupt record is added (message_crc, bad_length,
	// unknown_type in turn).
	BadRecord float64
	// OutOfRange: a message with a value over a physical limit is added.
	OutOfRange float64
	// Stale: a package of messages timed before 2020 (a device whose clock
	// was reset) is sent instead.
	Stale float64
	// Future: a message timed 20 to 30 minutes ahead is added.
	Future float64
	// Late: a valid message 30 s to 10 min older than the device's latest
	// is added.
	Late float64
	// WrongToken: the package is sent with a wrong token.
	WrongToken float64
}

// DefaultFaultMix returns the rates used by `watershed simulate --faults on`
// and the demo: roughly one package in three carries some fault.
func DefaultFaultMix() FaultMix {
	return FaultMix{
		LostACK:        0.04,
		Rebatch:        0.04,
		IntraDuplicate: 0.04,
		Malformed:      0.08,
		BadRecord:      0.04,
		OutOfRange:     0.04,
		Stale:          0.02,
		Future:         0.03,
		Late:           0.04,
		WrongToken:     0.02,
	}
}

// NoFaults returns the FaultMix that injects nothing (the zero FaultMix).
func NoFaults() FaultMix { return FaultMix{} }
