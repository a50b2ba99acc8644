package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/edge"
)

// edgeWaiting builds the edge, waiting w's capped, doubling time between
// attempts while no broker answers (sarama.ErrOutOfBrokers); it returns ctx's error when ctx ends
// first, and at once any other error. An edge restarted while the brokers
// are away (a network fault) thus waits for them, as the processors do,
// instead of exiting and being counted as a crash.
func edgeWaiting(ctx context.Context, opts edge.Options, w storeWait, log *slog.Logger) (*edge.Edge, error) {
	return waitFor(ctx, "brokers", func(context.Context) (*edge.Edge, error) { return edge.New(opts) },
		func(err error) bool { return errors.Is(err, sarama.ErrOutOfBrokers) }, w, nil, log)
}
