// Package ingest is the contract between the ingest edge (package edge),
// which receives the devices' packages, and the pipeline (package
// processors), which consumes them: the topics the edge writes, the record
// headers it sets, the key of its records and the stage name of its dead
// letters. Both sides name these only through this package, which imports
// nothing of either.
package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The topics the edge writes, before any installation prefix.
const (
	// RawTopic receives every accepted package, keyed by KeyDeviceID.
	RawTopic = "telemetry.raw"
	// DeadLetterTopic receives the packages the edge rejects after
	// authenticating them, as dead-letter envelopes with Stage.
	DeadLetterTopic = "telemetry.dlq"
)

// KeyDeviceID is what the raw topic's records are keyed by: the device id
// in decimal.
const KeyDeviceID = "device_id"

// Stage is the Stage of the dead-letter envelopes the edge writes.
const Stage = "edge"

// Record header names the edge writes on every raw and dead-lettered
// record.
const (
	// HeaderReceivedMs holds the time the edge received the package, in
	// Unix milliseconds as decimal ASCII. The validate stage measures
	// future_timestamp against it.
	HeaderReceivedMs = "watershed-received-ms"
	// HeaderEdgeID holds the id of the edge replica that received the
	// package.
	HeaderEdgeID = "watershed-edge"
)

// ErrNoReceivedTime is returned by ReceivedAt when the record has no
// HeaderReceivedMs header.
var ErrNoReceivedTime = errors.New("ingest: no " + HeaderReceivedMs + " header")

// ErrBadReceivedTime is wrapped by the errors of ParseReceivedMs.
var ErrBadReceivedTime = errors.New("ingest: malformed " + HeaderReceivedMs + " header")

// ReceivedAt returns the receive time that the edge wrote on a record, given
// the record's header lookup, such as (*topology.Context).Header:
//
//	t, err := ingest.ReceivedAt(ctx.Header)
//
// It returns ErrNoReceivedTime when the header is absent, and an error
// wrapping ErrBadReceivedTime when it is malformed. The time is in UTC.
func ReceivedAt(header func(key string) []byte) (time.Time, error) {
	v := header(HeaderReceivedMs)
	if v == nil {
		return time.Time{}, ErrNoReceivedTime
	}
	return ParseReceivedMs(v)
}

// ParseReceivedMs parses a HeaderReceivedMs value: Unix milliseconds as
// non-negative decimal ASCII without sign or spaces. The time is in UTC.
func ParseReceivedMs(v []byte) (time.Time, error) {
	if len(v) == 0 || len(v) > 19 {
		return time.Time{}, fmt.Errorf("%w: %q", ErrBadReceivedTime, v)
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%w: %q", ErrBadReceivedTime, v)
		}
	}
	ms, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrBadReceivedTime, err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// AppendReceivedMs appends the HeaderReceivedMs value of t to b.
func AppendReceivedMs(b []byte, t time.Time) []byte {
	return strconv.AppendInt(b, t.UnixMilli(), 10)
}
