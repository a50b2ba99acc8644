package topology_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// The retry group honours its group's Stop policy: a retried record that
// fails permanently, or spends its attempts, stops the runner as the group
// would, instead of being dead-lettered.
func TestRetryGroupHonoursStopPolicy(t *testing.T) {
	for _, c := range []struct {
		name string
		// fail is the retried record's error at attempt n (n > 1).
		fail func(n int) error
		want string
	}{
		{"permanent", func(int) error { return errors.New("cannot go on") }, "cannot go on"},
		{"exhausted", func(int) error { return topology.Transient(errors.New("still timing out")) }, "still timing out"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := topology.Kafka{Brokers: startBroker(t)}
			tp := topology.New("rs")
			in := topology.NewStream(tp, "words", codecs.String{}, topology.External("test"), topology.WithPartitions(1))
			p := tp.Processor("strict", topology.OnFailure(topology.Stop),
				topology.RetryBackoff(topology.Backoff{Initial: time.Millisecond, Max: time.Millisecond}),
				topology.WithRetryTopics(topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{10 * time.Millisecond}, MaxAttempts: 3,
					Probe: func(context.Context) error { return nil }}))
			var mu sync.Mutex
			attempts := 0
			topology.Consume(p, in, func(ctx *topology.Context, key, v string) error {
				if v != "bad" {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				attempts++
				if attempts == 1 {
					return topology.Transient(errors.New("timed out"))
				}
				return c.fail(attempts)
			})
			run := runWith(t, tp, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
				RestartBackoff: topology.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}})
			produce(t, k, in.Name(), "a", "good", "b", "bad")
			select {
			case err := <-run.done:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("run = %v, want the callback's error", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("a retried record that failed under the Stop policy did not end Run")
			}
			if got, _ := readUntil(t, k, tp.DeadLetterTopic(), time.Second, func([]*sarama.ConsumerMessage) bool { return false }); len(got) != 0 {
				t.Errorf("%d dead letters under the Stop policy", len(got))
			}
		})
	}
}

// Recoverable takes every error for recoverable except those that a
// restart cannot fix: the Stop policy, authentication and authorization,
// a record too large for Kafka, and configuration.
func TestRecoverableDenyList(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("some error goka reports that nobody listed"), true},
		{fmt.Errorf("error processing message: %v", errors.New("i/o deadline reached")), true},
		{errors.New("panic in callback: topology: strict words/0@1 (failed under the Stop policy): cannot go on"), false},
		{fmt.Errorf("login: %w", sarama.ErrSASLAuthenticationFailed), false},
		{fmt.Errorf("join: %w", sarama.ErrGroupAuthorizationFailed), false},
		{fmt.Errorf("describe: %w", sarama.ErrClusterAuthorizationFailed), false},
		{fmt.Errorf("produce: %w", sarama.ErrMessageSizeTooLarge), false},
		{fmt.Errorf("emit: %w", &sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: "out"}, Err: sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes: 3 > 2")}), false},
		{fmt.Errorf("new client: %w", sarama.ConfigurationError("Net.SASL.User must not be empty")), false},
		{fmt.Errorf("start: %w", topology.ErrTopicMismatch), false},
		{&topology.ValidationError{Problems: []error{errors.New("no producer")}}, false},
	} {
		if got := topology.Recoverable(c.err); got != c.want {
			t.Errorf("Recoverable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
