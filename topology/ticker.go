package topology

import (
	"context"
	"time"

	"github.com/IBM/sarama"
)

// The wait between attempts to make the ticker's producer: doubling from
// the first to the most.
const (
	tickProducerFirstWait = 100 * time.Millisecond
	tickProducerMostWait  = 30 * time.Second
)

// tickProducer makes the producer of the session's ticks, retrying with
// backoff until ctx ends: a broker unreachable at the session's start
// must not stop the wall-clock timers for the whole session.
func (rt *timeRuntime) tickProducer(ctx context.Context) (sarama.SyncProducer, error) {
	newProducer := rt.newTickProducer
	if newProducer == nil {
		newProducer = rt.defaultTickProducer
	}
	wait := tickProducerFirstWait
	for {
		prod, err := newProducer()
		if err == nil {
			return prod, nil
		}
		rt.log.Warn("wall-clock timer ticks: no producer yet; timers fire with the partitions' records until one is made",
			"group", rt.td.p.group, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, tickProducerMostWait)
	}
}

func (rt *timeRuntime) defaultTickProducer() (sarama.SyncProducer, error) {
	cfg := rt.kafka.producerConfig()
	cfg.Producer.Partitioner = originPartitioner(byTopicPartitioner(nil, Hasher))
	cfg.Producer.Return.Successes = true
	return sarama.NewSyncProducer(rt.kafka.Brokers, cfg)
}
