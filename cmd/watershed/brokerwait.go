package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology"
)

// brokersWaiting returns once one of k's brokers answers, waiting w's
// capped, doubling time between attempts; it returns ctx's error when ctx
// ends first, and at once an error that waiting cannot cure. An edge
// restarted while the brokers are away (a network fault) thus waits for
// them, as the processors do, instead of exiting and being counted as a
// crash.
func brokersWaiting(ctx context.Context, k topology.Kafka, w storeWait, log *slog.Logger) error {
	d := w.min
	for {
		client, err := sarama.NewClient(k.Brokers, k.Config())
		if err == nil {
			return client.Close()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !topology.Recoverable(err) {
			return fmt.Errorf("connect to Kafka: %w", err)
		}
		log.Warn("brokers not reachable; trying again", "in", d.String(), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		d = min(2*d, w.max)
	}
}
