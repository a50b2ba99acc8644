package topology

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultStateRestoreTimeout is the StateRestoreTimeout of a runner that
// sets none.
const DefaultStateRestoreTimeout = 5 * time.Minute

// errStateNotRestored is in the error a session stops with when the
// rebuild of its windows and timers failed for a reason of its own (a
// corrupt changelog record, the timeout): unlike a record left
// uncommitted by a rebalance, it counts towards RestartLimit.
var errStateNotRestored = errors.New("topology: state not restored")

// withRestoreTimeout sets how long rt's session set-up may rebuild the
// state (0: DefaultStateRestoreTimeout), and returns rt.
func (rt *timeRuntime) withRestoreTimeout(d time.Duration) *timeRuntime {
	if rt != nil {
		rt.restoreTimeout = d
	}
	return rt
}

func (rt *timeRuntime) restoreTimeoutOrDefault() time.Duration {
	if rt.restoreTimeout > 0 {
		return rt.restoreTimeout
	}
	return DefaultStateRestoreTimeout
}

// stateSetupError wraps the failed rebuild err of group's session: a
// session that ended (a rebalance) left records uncommitted, another
// failure is the state's.
func stateSetupError(session context.Context, group string, err error) error {
	if session.Err() != nil {
		return fmt.Errorf("%w: %s: state not restored: %w", errAbandoned, group, err)
	}
	return fmt.Errorf("%w: %s: %w", errStateNotRestored, group, err)
}
