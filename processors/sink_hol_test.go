package processors_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// failingDevices is a memStore that fails (as the store answering and
// failing) every write holding a device of poison, and the first fails[d]
// writes of device d.
type failingDevices struct {
	*memStore
	mu     sync.Mutex
	poison map[uint64]bool
	fails  map[uint64]int
}

func (s *failingDevices) Write(ctx context.Context, rs []records.Reading) error {
	s.mu.Lock()
	for _, r := range rs {
		if s.poison[r.DeviceID] {
			s.mu.Unlock()
			return fmt.Errorf("server error: %w", sinks.ErrWriteFailed)
		}
		if s.fails[r.DeviceID] > 0 {
			s.fails[r.DeviceID]--
			s.mu.Unlock()
			return fmt.Errorf("server error: %w", sinks.ErrWriteFailed)
		}
	}
	s.mu.Unlock()
	return s.memStore.Write(ctx, rs)
}

func (s *failingDevices) Ping(context.Context) error { return nil }

// A record due in the first retry topic is handled while a record of the
// last one waits for its (here, hour-long) delay: the companion's tiers do
// not hold each other up, though goka hands a partition of all of them to
// one goroutine.
func TestSinkRetryTierNotBlockedByLaterTier(t *testing.T) {
	store := &failingDevices{memStore: newMemStore(), poison: map[uint64]bool{999: true}, fails: map[uint64]int{}}
	k, p, r, ctx := runSink(t, store, processors.Config{Partitions: 1, SinkRetry: topology.RetryPolicy{InPlace: 1, Delays: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, time.Hour}, MaxAttempts: 100},
		SinkBackoff: topology.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		processors.GroupSink, processors.GroupSink+"-retry")
	sendPackages(t, k, p, 999, 999)
	waitUntil(t, func() error { return holds(ctx, r, processors.GroupSink+"-retry-3") })
	time.Sleep(500 * time.Millisecond) // the companion takes it up
	store.mu.Lock()
	store.fails[1] = 2 // the merged write and the record's own
	store.mu.Unlock()
	sendPackages(t, k, p, 1, 1)
	waitUntil(t, func() error {
		if rows, _ := store.Readings(ctx, sinks.Query{DeviceID: 1}); len(rows) != 2 {
			return fmt.Errorf("device 1: %d rows", len(rows))
		}
		return nil
	})
}
