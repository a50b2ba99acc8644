// Package sinks defines where the pipeline stores every reading: the Store
// interface that the sink processor writes to, and its implementations
// (sinks/local, the embedded default on goleveldb; sinks/cassandra).
//
// Every store keys a row by (device, message time, content CRC), the
// message's identity, so writing a reading twice leaves one row: a replay
// after a crash or a redelivered record overwrites instead of duplicating.
package sinks

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
)

// ErrUnavailable is wrapped by errors that say the store cannot take writes
// now, whatever the rows: it is down, short of the replicas its consistency
// needs (while it may still answer a ping), overloaded, timed out, or not
// reachable. The sink treats it as an outage: it pauses with backpressure
// and retries the rows in place for as long as the outage lasts; they never
// move to the retry topics or to the dead-letter topic.
var ErrUnavailable = errors.New("sinks: store unavailable")

// ErrWriteFailed is wrapped by errors of a store that answered and failed
// the write in a way that may pass (a server error, a replica's write
// failure) and may be the rows' own doing. The sink retries the rows, moves
// them through the retry topics while the store takes other writes, and
// dead-letters them (retries_exhausted) if they keep failing. Any error of
// Write that wraps neither sentinel is permanent for those rows.
var ErrWriteFailed = errors.New("sinks: store failed the write")

// Query selects readings of one device.
type Query struct {
	DeviceID uint64
	// From and To bound the message time, From inclusive and To exclusive;
	// a zero value leaves that side open.
	From, To time.Time
	// Limit caps the rows returned (0: no limit).
	Limit int
	// Newest orders the rows newest first: descending message time, then
	// descending content CRC. Otherwise they come oldest first.
	Newest bool
	// After, when set, resumes a paged query: only the rows that come
	// after it in the query's order are returned (older ones when Newest),
	// not the row at After itself. A page's last row is the next page's
	// After.
	After *Position
}

// Position is a row's place in a device's order: message time, then
// content CRC.
type Position struct {
	TimeMs     uint64
	ContentCRC uint32
}

// Less reports whether p comes before o in ascending order.
func (p Position) Less(o Position) bool {
	return p.TimeMs < o.TimeMs || p.TimeMs == o.TimeMs && p.ContentCRC < o.ContentCRC
}

// next returns the position right after p, and false if p is the last.
func (p Position) next() (Position, bool) {
	switch {
	case p.ContentCRC < math.MaxUint32:
		return Position{p.TimeMs, p.ContentCRC + 1}, true
	case p.TimeMs < math.MaxUint64:
		return Position{p.TimeMs + 1, 0}, true
	}
	return Position{}, false
}

// Span returns the positions of q's rows as [lo, hi), hi nil when the
// span is open above, and false when no row can match. It applies From,
// To and After (not Limit). Stores share it so that their bounds agree.
func (q Query) Span() (lo Position, hi *Position, ok bool) {
	if !q.From.IsZero() {
		ms, ok := ceilMs(q.From)
		if !ok {
			return Position{}, nil, false
		}
		lo.TimeMs = ms
	}
	if !q.To.IsZero() {
		if ms, ok := ceilMs(q.To); ok {
			hi = &Position{TimeMs: ms}
		}
	}
	if q.After != nil {
		if q.Newest {
			if hi == nil || q.After.Less(*hi) {
				a := *q.After
				hi = &a
			}
		} else {
			n, ok := q.After.next()
			if !ok {
				return Position{}, nil, false
			}
			if lo.Less(n) {
				lo = n
			}
		}
	}
	return lo, hi, hi == nil || lo.Less(*hi)
}

// ceilMs returns the smallest Unix millisecond at or after t, clamped to
// 0, and false if t is past every millisecond that a time.Time can hold as
// an int64 count (so no row is at or after it).
func ceilMs(t time.Time) (uint64, bool) {
	if t.Before(time.UnixMilli(0)) {
		return 0, true
	}
	if t.Unix() >= math.MaxInt64/1000 {
		return 0, false
	}
	ms := uint64(t.UnixMilli())
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		ms++
	}
	return ms, true
}

// Store keeps readings. Implementations are safe for concurrent use.
type Store interface {
	// Write stores readings idempotently. It returns only when every row is
	// durable as the store defines it.
	Write(ctx context.Context, readings []records.Reading) error
	// Readings returns the rows matching q, ordered by message time and
	// content CRC (newest first when q.Newest).
	Readings(ctx context.Context, q Query) ([]records.Reading, error)
	// Close releases the store.
	Close() error
}

// Pinger is implemented by stores that can tell whether they answer at
// all. The sink processor asks it when writes keep failing with
// ErrWriteFailed, to tell an outage (pause, retry in place) from a problem
// of the rows at hand (move them to the retry topics). A store that answers
// its ping is not taken to be up for that: a write failing with
// ErrUnavailable is an outage whatever the ping says.
type Pinger interface {
	Ping(ctx context.Context) error
}

// SummaryQuery selects the summaries of one device.
type SummaryQuery struct {
	DeviceID uint64
	// From and To bound the window start, From inclusive and To
	// exclusive; a zero value leaves that side open.
	From, To time.Time
}

// Span returns q's window starts as Unix milliseconds [lo, hi), hi 0 when
// open above, and false when no window can match.
func (q SummaryQuery) Span() (lo, hi uint64, ok bool) {
	p, h, ok := Query{From: q.From, To: q.To}.Span()
	if h != nil {
		hi = h.TimeMs
	}
	return p.TimeMs, hi, ok
}

// SummaryStore keeps the summaries of closed windows. Implementations are
// safe for concurrent use.
type SummaryStore interface {
	// WriteSummaries stores summaries; a summary replaces the stored one
	// of the same device and window start, so writing a window again
	// (after a replay, or a late update) leaves its newest summary. It
	// returns only when every summary is durable as the store defines it.
	WriteSummaries(ctx context.Context, summaries []records.Summary) error
	// Summaries returns the device's summaries whose window starts in
	// [q.From, q.To), ordered by window start.
	Summaries(ctx context.Context, q SummaryQuery) ([]records.Summary, error)
}
