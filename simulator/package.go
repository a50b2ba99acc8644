package simulator

import (
	"github.com/watershed-io/watershed/codecs/protocol"
)

// Package is one package a Fleet generated: what to send, and what the
// pipeline should make of it.
type Package struct {
	// Seq is the package's position in the Fleet's stream, from 1.
	Seq int
	// Device is the device that sends it. The counts go to
	// Expect.Device, the header's device_id, which differs only for
	// zero_device.
	Device uint64
	// Token is the bearer token to present (wrong for FaultWrongToken).
	Token string
	// Bytes is the request body.
	Bytes []byte
	// Faults lists the faults injected into the package (none for a clean
	// one).
	Faults []Fault
	// ResendOf is, for a lost-ACK resend, the Seq of the package whose
	// bytes it repeats; 0 otherwise.
	ResendOf int
	// Expect is what the pipeline should do with the package.
	Expect Expect

	// sentMessages are the messages a device would re-batch later; set by
	// the builders and consumed by Fleet.Next.
	sentMessages []protocol.Message
}

// HasFault reports whether f was injected into the package.
func (p *Package) HasFault(f Fault) bool {
	for _, x := range p.Faults {
		if x == f {
			return true
		}
	}
	return false
}

// Expect is what the ingest edge and the stages after it should do with a
// package.
type Expect struct {
	// Code is the edge's expected answer: 202, 400, 401, 413 or 422.
	Code int
	// Reject is the reason the whole package is rejected, by the edge
	// (400, 413, 422) or by the decoder after a 202 (bad_compression,
	// count_mismatch, too_large); ReasonNone when it is not.
	Reject protocol.Reason
	// Device is the header's device_id, which the pipeline counts the
	// package against (0 for zero_device; garbage for a 400).
	Device uint64
	// Version, Firmware, PackageSeq and BaseTimeMs are the header's.
	Version    uint8
	Firmware   uint16
	PackageSeq uint32
	BaseTimeMs uint64
	// Records gives each record's fate, in package order, when the package
	// is not rejected as a whole.
	Records []RecordExpect
}

// Counts returns how many records are valid (stored unless a copy was
// stored before), intra-package duplicates and invalid.
func (e *Expect) Counts() (valid, duplicates, invalid int) {
	for i := range e.Records {
		switch e.Records[i].Outcome {
		case OutcomeValid:
			valid++
		case OutcomeDuplicate:
			duplicates++
		case OutcomeInvalid:
			invalid++
		}
	}
	return valid, duplicates, invalid
}

// Outcome is what the decoder and the validation stage do with a record.
type Outcome uint8

// Record outcomes.
const (
	// OutcomeValid: the record decodes to a valid message, which the
	// cross-package dedupe stores or drops as a duplicate.
	OutcomeValid Outcome = iota + 1
	// OutcomeDuplicate: an intra-package duplicate, dropped and counted.
	OutcomeDuplicate
	// OutcomeInvalid: dead-lettered with RecordExpect.Reason.
	OutcomeInvalid
)

// String returns "valid", "duplicate" or "invalid".
func (o Outcome) String() string {
	switch o {
	case OutcomeValid:
		return "valid"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeInvalid:
		return "invalid"
	}
	return "unknown"
}

// RecordExpect is one record's expected fate.
type RecordExpect struct {
	// Index is the record's 0-based position in the package.
	Index int
	// Outcome is what becomes of it.
	Outcome Outcome
	// Reason is, for OutcomeInvalid, the dead-letter reason: message_crc,
	// bad_length or unknown_type (decoder), or out_of_range,
	// stale_timestamp or future_timestamp (validation).
	Reason protocol.Reason
	// Fault is the fault that produced the record, "" for a regular one.
	Fault Fault
	// Message is, for records that decode to a message (valid ones and
	// those failing validation), the message as the decoder gives it:
	// TimeMs, OffsetMs, CRC and ContentCRC set.
	Message protocol.Message
	// HasMessage reports whether Message is set.
	HasMessage bool
}

// Identity is a message's identity across packages.
type Identity struct {
	DeviceID   uint64
	TimeMs     uint64
	ContentCRC uint32
}
