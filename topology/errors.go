package topology

import (
	"errors"
	"fmt"
)

// Reasons the framework itself gives to dead-lettered records. Stages add
// their own (the decoder's protocol reasons, "out_of_range", ...).
const (
	// ReasonDecodeError: the input record did not decode with its stream's codec.
	ReasonDecodeError = "decode_error"
	// ReasonCallbackError: the callback returned an error that names no reason.
	ReasonCallbackError = "callback_error"
	// ReasonPanic: the callback panicked.
	ReasonPanic = "panic"
	// ReasonTooLarge: an output of the record (an emit, a loopback, a
	// table write, its move to a retry topic) would not fit in a Kafka
	// record of MaxRecordBytes.
	ReasonTooLarge = "too_large"
)

// RejectError is a permanent failure of one record, with the reason that
// goes into its dead-letter envelope.
type RejectError struct {
	Reason string
	Err    error
}

// Error returns "rejected (REASON): ERROR".
func (e *RejectError) Error() string {
	if e.Err == nil {
		return "rejected: " + e.Reason
	}
	return fmt.Sprintf("rejected (%s): %v", e.Reason, e.Err)
}

// Unwrap returns the underlying error.
func (e *RejectError) Unwrap() error { return e.Err }

// Reject returns an error that sends the record to the dead-letter topic
// with reason. err may be nil.
func Reject(reason string, err error) error { return &RejectError{Reason: reason, Err: err} }

// transientError marks a failure that may pass: a broker or a database that
// does not answer. outage says the failure is the dependency's, whatever
// the record.
type transientError struct {
	err    error
	outage bool
}

func (e *transientError) Error() string {
	if e.outage {
		return "outage: " + e.err.Error()
	}
	return "transient: " + e.err.Error()
}
func (e *transientError) Unwrap() error { return e.err }

// Transient marks err as transient: the framework retries the record with
// capped exponential backoff instead of dead-lettering it, and never
// commits it until it succeeds.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err: err}
}

// IsTransient reports whether err, or an error it wraps, was marked
// Transient or Outage.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// Outage marks err as a failure of a dependency that cannot serve anyone
// now (a store short of the replicas its consistency needs, a time-out, no
// host reachable), not of the record at hand. It is transient, and more:
// the record waits in place, pausing its partition, for as long as the
// failure lasts, whatever a RetryPolicy's probe answers; it never moves to
// the retry topics and never reaches the dead-letter topic, however many
// attempts it takes.
func Outage(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err: err, outage: true}
}

// IsOutage reports whether err, or an error it wraps, was marked Outage.
func IsOutage(err error) bool {
	var t *transientError
	for e := err; errors.As(e, &t); e = t.err {
		if t.outage {
			return true
		}
	}
	return false
}

// ReasonOf returns the dead-letter reason of err: the reason of a
// RejectError it wraps, or ReasonCallbackError.
func ReasonOf(err error) string {
	var r *RejectError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ReasonCallbackError
}

// errAbandoned is the error a processor stops with when it shuts down, or
// loses a partition in a rebalance, while a record is still being retried
// or written: the record is left uncommitted, so that the next owner of the
// partition processes it again. The errors that wrap it say which.
var errAbandoned = errors.New("topology: record left uncommitted")

// ErrStopPolicy is wrapped by the failure of a processor whose policy is
// Stop: it ends the Runner rather than restarting the group.
var ErrStopPolicy = errors.New("failed under the Stop policy")
