//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/watershed-io/watershed/internal/reconcile"
	"github.com/watershed-io/watershed/simulator"
)

// event is one injected fault.
type event struct {
	AtS    float64 `json:"at_s"`
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	Detail string  `json:"detail,omitempty"`
}

// faultLog collects the injected faults.
type faultLog struct {
	start  time.Time
	log    *slog.Logger
	mu     sync.Mutex
	events []event
	errs   []string
}

func (l *faultLog) add(kind, target, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event{AtS: time.Since(l.start).Seconds(), Kind: kind, Target: target, Detail: detail})
	l.log.Info("fault injected", "kind", kind, "target", target, "detail", detail)
}

func (l *faultLog) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

func (l *faultLog) counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, e := range l.events {
		out[e.Kind]++
	}
	return out
}

func joinHosts(h []string) string {
	out := ""
	for i, x := range h {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

func okViews(rs []reconcile.Report) []bool {
	out := make([]bool, len(rs))
	for i, r := range rs {
		out[i] = r.OK
	}
	return out
}

// viewMismatches returns each view's mismatch count and first mismatches.
func viewMismatches(rs []reconcile.Report) []map[string]any {
	var out []map[string]any
	for _, r := range rs {
		out = append(out, map[string]any{"count": r.MismatchCount, "first": r.Mismatches, "view_totals": r.View, "truth": r.Truth})
	}
	return out
}

// checkStable runs reconcile.Check until it agrees, or until its answer
// stayed the same for 5 checks in a row (the sources no longer change),
// or 2 minutes passed, and returns the last report.
func checkStable(ctx context.Context, truth simulator.Truth, src reconcile.Sources) (reconcile.Report, error) {
	var last reconcile.Report
	same := 0
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := reconcile.Check(ctx, truth, src)
		if err != nil && !errors.Is(err, ErrNotCaughtUp) {
			return r, err
		}
		if err == nil {
			if r.OK {
				return r, nil
			}
			if slices.Equal(r.Mismatches, last.Mismatches) && r.MismatchCount == last.MismatchCount {
				same++
			} else {
				same = 0
			}
			last = r
		}
		if same >= 5 || time.Now().After(deadline) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// dlqMismatches compares the dead-letter topic's counts by reason with the
// truth's bounds.
func dlqMismatches(byReason map[string]int, truth simulator.Truth) []string {
	var out []string
	reasons := map[string]bool{}
	for r := range byReason {
		reasons[r] = true
	}
	for r := range truth.DeadLetters {
		reasons[r] = true
	}
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		n, lo := byReason[r], truth.DeadLetters[r]
		hi := max(lo, truth.DeadLettersMax[r])
		if n < lo || n > hi {
			out = append(out, fmt.Sprintf("%s: topic has %d, truth %d..%d", r, n, lo, hi))
		}
	}
	return out
}

// machine describes where the figures were measured.
func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, Go %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}
