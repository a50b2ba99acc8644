package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/edge"
)

// edgeWaiting builds the edge, waiting w's capped, doubling time between
// attempts while no broker answers (sarama.ErrOutOfBrokers); it returns ctx's error when ctx ends
// first, and at once any other error. An edge restarted while the brokers
// are away (a network fault) thus waits for them, as the processors do,
// instead of exiting and being counted as a crash.
func edgeWaiting(ctx context.Context, opts edge.Options, w storeWait, log *slog.Logger) (*edge.Edge, error) {
	d := w.min
	for {
		e, err := edge.New(opts)
		if err == nil {
			return e, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(err, sarama.ErrOutOfBrokers) {
			return nil, err // bad configuration, or anything else
		}
		log.Warn("brokers not reachable; trying again", "in", d.String(), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		d = min(2*d, w.max)
	}
}
