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
}

// Store keeps readings. Implementations are safe for concurrent use.
type Store interface {
	// Write stores readings idempotently. It returns only when every row is
	// durable as the store defines it.
	Write(ctx context.Context, readings []records.Reading) error
	// Readings returns the rows matching q, ordered by message time and
	// content CRC.
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
