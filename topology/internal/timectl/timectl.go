// Package timectl lets the framework's test driver (topology/topologytest)
// drive the wall clock of the processors it runs and reach their
// framework-owned state. The driver puts a Control in the context its
// processors run with; package topology finds it there.
package timectl

import (
	"context"
	"sync"
	"time"
)

// Control is a test driver's clock and its registry of the processors'
// time runtimes, by group.
type Control struct {
	mu       sync.Mutex
	now      time.Time
	runtimes map[string]any
}

// New returns a Control whose clock reads start.
func New(start time.Time) *Control { return &Control{now: start, runtimes: map[string]any{}} }

// Now returns the driven wall-clock time.
func (c *Control) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Control) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Register records the time runtime of group (the processor registers it
// when it first handles a record).
func (c *Control) Register(group string, rt any) {
	c.mu.Lock()
	c.runtimes[group] = rt
	c.mu.Unlock()
}

// Runtime returns the time runtime group registered, or nil.
func (c *Control) Runtime(group string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runtimes[group]
}

type key struct{}

// With returns ctx carrying c.
func With(ctx context.Context, c *Control) context.Context { return context.WithValue(ctx, key{}, c) }

// From returns the Control ctx carries, or nil.
func From(ctx context.Context) *Control {
	c, _ := ctx.Value(key{}).(*Control)
	return c
}
