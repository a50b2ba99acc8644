package topology

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/watershed-io/watershed/topology/deadletter"
)

// HeaderValueTruncated marks a dead-letter envelope whose value was cut to
// fit the dead-letter topic: it is added to the headers the envelope keeps,
// with the original value's length in decimal. Such a value is not the
// original record's and must not be replayed as it.
const HeaderValueTruncated = "watershed-value-truncated"

// maxCutError bounds the error text of an envelope that is cut to fit.
const maxCutError = 4 << 10

// maxCutKey bounds the key kept in an envelope whose headers and key alone
// do not fit.
const maxCutKey = 1 << 10

// deadLetterKey is the Kafka key of the dead letter of a record keyed by
// key: the key itself, cut to maxCutKey bytes, so that the key and an
// envelope of MaxDeadLetterBytes fit in a record of MaxRecordBytes.
func deadLetterKey(key string) string { return key[:min(len(key), maxCutKey)] }

// encodeEnvelope encodes e in at most limit bytes. An envelope that does
// not fit is cut down: its error text to 4 KiB, then its value to what is
// left, marked with HeaderValueTruncated; if the key and headers alone do
// not fit, only the marker is kept of the headers and 1 KiB of the key.
// Stage, reason, topic, partition, offset, times and attempts are always
// kept, so the dead letter still says what failed, where and why. It
// reports whether e was cut.
func encodeEnvelope(e deadletter.Envelope, limit int) ([]byte, bool, error) {
	b := deadletter.Append(nil, e)
	if len(b) <= limit {
		return b, false, nil
	}
	value := e.Value
	if len(e.Error) > maxCutError {
		e.Error = strings.ToValidUTF8(e.Error[:maxCutError], "") + " [cut]"
	}
	marker := deadletter.Header{Key: HeaderValueTruncated, Value: []byte(strconv.Itoa(len(value)))}
	e.Headers = append(slices.Clone(e.Headers), marker)
	room := func() int {
		e.Value = nil
		// The value's length prefix grows from one byte to at most
		// MaxVarintLen64.
		return limit - len(deadletter.Append(nil, e)) - binary.MaxVarintLen64
	}
	n := room()
	if n < 0 {
		e.Headers = []deadletter.Header{marker}
		e.Key = e.Key[:min(len(e.Key), maxCutKey)]
		if n = room(); n < 0 {
			return nil, false, fmt.Errorf("topology: a dead-letter envelope does not fit in %d bytes even without its value", limit)
		}
	}
	if value != nil {
		e.Value = value[:min(n, len(value))]
	}
	return deadletter.Append(nil, e), true, nil
}

// envelopeFor returns the factory of dead-letter envelopes for a record
// whose first failure was at first (zero when it did not fail itself).
func envelopeFor(first time.Time) envelopeFactory {
	return func(c *Context, reason string, err error, value []byte) ([]byte, error) {
		rec := c.info(first)
		return c.encodeEnvelope(&rec, reason, err, value)
	}
}

// encodeEnvelope is newEnvelope, counting a cut one.
func (c *Context) encodeEnvelope(rec *recordInfo, reason string, err error, value []byte) ([]byte, error) {
	b, cut, encErr := newEnvelope(rec, reason, err, value)
	if cut && c.obs != nil {
		c.obs.deadLetterTruncated(c.proc.group)
	}
	return b, encErr
}

// newEnvelope encodes the dead-letter envelope of a failure of record rec
// (whose first failure is now when rec.first is zero), cut down to
// MaxDeadLetterBytes if it is larger; it reports whether it was cut.
func newEnvelope(rec *recordInfo, reason string, err error, value []byte) ([]byte, bool, error) {
	now := time.Now()
	first := rec.first
	if first.IsZero() {
		first = now
	}
	e := deadletter.Envelope{
		Stage:        rec.group,
		Reason:       reason,
		Topic:        rec.topic,
		Partition:    rec.partition,
		Offset:       rec.offset,
		Key:          []byte(rec.key),
		Value:        value,
		Timestamp:    rec.timestamp,
		Attempts:     rec.attempt,
		FirstFailure: first,
		LastFailure:  now,
	}
	if err != nil {
		e.Error = err.Error()
	}
	for _, h := range rec.headers {
		e.Headers = append(e.Headers, deadletter.Header{Key: h.Key, Value: h.Value})
	}
	return encodeEnvelope(e, MaxDeadLetterBytes)
}
