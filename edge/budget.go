package edge

import "sync"

// budget is a byte semaphore that never waits: acquire fails when the
// bytes are not available, so that the edge answers 429 instead of queueing
// requests in memory.
type budget struct {
	mu    sync.Mutex
	max   int64
	used  int64
	gauge func(float64) // reports the bytes in use; never nil
}

// acquire takes n bytes and reports whether they were available.
func (b *budget) acquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n < 0 || b.used+n > b.max {
		return false
	}
	b.used += n
	b.gauge(float64(b.used))
	return true
}

// release gives back n bytes taken by acquire.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("edge: released more bytes than acquired")
	}
	b.gauge(float64(b.used))
}

// inUse returns the bytes taken.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
