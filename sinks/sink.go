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

// ErrUnavailable is wrapped by errors that may pass by themselves: the store
// is down, overloaded, or timed out. The sink processor retries them with
// backoff and never skips the rows. Any other error from Write is
// permanent for those rows.
var ErrUnavailable = errors.New("sinks: store unavailable")

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
// all. The sink processor asks it when writes keep failing, to tell an
// outage (pause, retry in place) from a problem of the rows at hand (move
// them to the retry topics).
type Pinger interface {
	Ping(ctx context.Context) error
}
