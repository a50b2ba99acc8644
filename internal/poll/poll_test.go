package poll_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/internal/poll"
)

func TestUntil(t *testing.T) {
	n := 0
	if err := poll.Until(context.Background(), time.Minute, time.Millisecond, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("err %v after %d calls", err, n)
	}
	err := poll.Until(context.Background(), 5*time.Millisecond, time.Millisecond, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "never") {
		t.Fatalf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := poll.Until(ctx, time.Minute, time.Millisecond, func() error { return errors.New("x") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
