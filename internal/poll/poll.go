// Package poll waits for a condition, for the demo's drain, the benchmark
// and the fault test, which all wait on a real system settling.
package poll

import (
	"context"
	"fmt"
	"time"
)

// Until calls cond every interval until it returns nil, ctx ends or
// timeout passes. It returns nil, or an error wrapping the context's error
// or naming the timeout, with cond's last error.
func Until(ctx context.Context, timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
