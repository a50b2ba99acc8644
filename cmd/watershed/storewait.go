package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
)

// storeWait is the capped, doubling wait between attempts to reach a store
// (or the brokers) that is not reachable.
type storeWait struct{ min, max time.Duration }

// defaultStoreWait starts at half a second and settles at 30s.
var defaultStoreWait = storeWait{min: 500 * time.Millisecond, max: 30 * time.Second}

// errStoreNotOpen is the readiness of a process still waiting for its
// store.
var errStoreNotOpen = errors.New("waiting for the store to be reachable")

// storeFailuresMetric counts failed attempts to open the store.
func storeFailuresMetric() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watershed_store_open_failures_total",
		Help: "Attempts to open the sink's store that failed because it was not reachable; the process keeps trying.",
	})
}

// transientOpen reports whether an error of opening a store may pass: the
// store was not reachable or failed on its side. A refused login is
// permanent whatever it wraps, as is anything else (bad configuration).
func transientOpen(err error) bool {
	if errors.Is(err, cassandra.ErrAuthentication) {
		return false
	}
	return errors.Is(err, sinks.ErrUnavailable) || errors.Is(err, sinks.ErrWriteFailed)
}

// openWaiting calls open until it returns a store, fails permanently or
// ctx ends (then it returns ctx's error). A process restarted while its
// store is down thus waits for it, instead of exiting and being counted
// as a crash. failures (nil: none) counts the failed attempts.
func openWaiting(ctx context.Context, open func(context.Context) (sinks.Store, error), w storeWait, failures prometheus.Counter, log *slog.Logger) (sinks.Store, error) {
	return waitFor(ctx, "store", open, transientOpen, w, failures, log)
}

// waitFor calls open until it succeeds, fails with an error transient
// does not accept (returned at once), or ctx ends (then it returns ctx's
// error), waiting w's capped, doubling time between attempts. failures
// (nil: none) counts the failed attempts; what names the awaited part in
// the log.
func waitFor[T any](ctx context.Context, what string, open func(context.Context) (T, error), transient func(error) bool, w storeWait, failures prometheus.Counter, log *slog.Logger) (T, error) {
	var zero T
	d := w.min
	for {
		v, err := open(ctx)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		if !transient(err) {
			return zero, err
		}
		if failures != nil {
			failures.Inc()
		}
		log.Warn(what+" not reachable; trying again", "in", d.String(), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, ctx.Err()
		case <-t.C:
		}
		d = min(2*d, w.max)
	}
}
