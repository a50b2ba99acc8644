package edge

import (
	"math"
	"sync"
	"time"
)

// limiterShards is the number of independently locked parts of the
// per-device rate limiter, so that concurrent requests for different
// devices rarely wait for each other.
const limiterShards = 64

// bucketBytes is an estimate of the memory one tracked device takes: the map
// entry (an 8-byte key and a 24-byte bucket) with Go's map overhead.
const bucketBytes = 64

// tokenBucket is one device's buckets: packages and bytes available at
// last, in nanoseconds since the limiter's start.
type tokenBucket struct {
	packages, bytes float64
	last            int64
}

// limiterShard holds the buckets of the devices whose id falls into it.
type limiterShard struct {
	mu      sync.Mutex
	buckets map[uint64]tokenBucket
	// swept is when the shard was last swept of full buckets.
	swept int64
}

// dimension is one thing a device's bucket limits: a sustained rate a
// second and a burst. A zero rate is no limit.
type dimension struct {
	rate, burst float64
}

// refill returns tokens after elapsed nanoseconds.
func (d dimension) refill(tokens float64, elapsed int64) float64 {
	return math.Min(d.burst, tokens+float64(elapsed)/float64(time.Second)*d.rate)
}

// wait returns how long until tokens reach need.
func (d dimension) wait(tokens, need float64) int64 {
	if tokens >= need {
		return 0
	}
	return nanos((need - tokens) / d.rate)
}

// fill returns the time an empty bucket takes to refill, in nanoseconds.
func (d dimension) fill() int64 {
	if d.rate == 0 {
		return 0
	}
	return nanos(d.burst / d.rate)
}

// limiter is a token bucket per device id, of packages and of bytes, with
// bounded memory: at most maxDevices buckets (rounded up to a multiple of
// limiterShards). A bucket that has refilled to its burst is the same as no
// bucket, so full buckets are dropped when a shard is at its cap; if none
// is full, an arbitrary bucket of the shard is dropped, which gives that
// one device a fresh burst. Only authenticated requests reach the limiter,
// so filling it needs valid tokens of many devices.
type limiter struct {
	packages, bytes dimension
	perShard        int
	// fill is the time an empty bucket takes to refill, in nanoseconds.
	fill   int64
	start  time.Time
	now    func() time.Time
	shards [limiterShards]limiterShard
	// onCount reports the change in the number of tracked devices.
	onCount func(delta int)
}

// newLimiter returns a limiter of packages and bytes (a zero rate turns a
// dimension off), for at most maxDevices devices. onCount receives every
// change in the number of buckets held.
func newLimiter(packages, bytes dimension, maxDevices int, now func() time.Time, onCount func(int)) *limiter {
	l := &limiter{
		packages: packages,
		bytes:    bytes,
		perShard: max(1, (maxDevices+limiterShards-1)/limiterShards),
		fill:     max(packages.fill(), bytes.fill()),
		now:      now,
		onCount:  onCount,
	}
	l.start = now()
	for i := range l.shards {
		l.shards[i].buckets = make(map[uint64]tokenBucket)
	}
	return l
}

// allow takes one package and size bytes of device id's buckets. When
// either lacks them it takes nothing, and returns false and how long until
// both will have them.
func (l *limiter) allow(id uint64, size int64) (bool, time.Duration) {
	t := int64(l.now().Sub(l.start))
	// Fibonacci hashing spreads sequential ids over the shards.
	s := &l.shards[(id*0x9E3779B97F4A7C15)>>(64-6)]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[id]
	if !ok {
		s.makeRoom(l, t)
		b = tokenBucket{packages: l.packages.burst, bytes: l.bytes.burst, last: t}
		l.onCount(1)
	} else if t > b.last {
		b.packages = l.packages.refill(b.packages, t-b.last)
		b.bytes = l.bytes.refill(b.bytes, t-b.last)
		b.last = t
	}
	var wait int64
	if l.packages.rate > 0 {
		wait = l.packages.wait(b.packages, 1)
	}
	if l.bytes.rate > 0 {
		wait = max(wait, l.bytes.wait(b.bytes, float64(size)))
	}
	if wait == 0 {
		b.packages--
		b.bytes -= float64(size)
	}
	s.buckets[id] = b
	return wait == 0, time.Duration(wait)
}

// full reports whether bucket b has refilled by time t.
func (l *limiter) full(b tokenBucket, t int64) bool {
	if t-b.last >= l.fill {
		return true
	}
	return (l.packages.rate == 0 || l.packages.refill(b.packages, t-b.last) >= l.packages.burst) &&
		(l.bytes.rate == 0 || l.bytes.refill(b.bytes, t-b.last) >= l.bytes.burst)
}

// makeRoom makes room for one more bucket in the shard at time t: when it
// is at its cap, it drops the full buckets (at most once per refill time,
// so that a shard of active devices is not scanned on every request), and
// then, if still at its cap, one arbitrary bucket.
func (s *limiterShard) makeRoom(l *limiter, t int64) {
	if len(s.buckets) < l.perShard {
		return
	}
	if t-s.swept >= l.fill || s.swept == 0 {
		s.swept = t
		for id, b := range s.buckets {
			if l.full(b, t) {
				delete(s.buckets, id)
				l.onCount(-1)
			}
		}
	}
	for id := range s.buckets {
		if len(s.buckets) < l.perShard {
			break
		}
		delete(s.buckets, id)
		l.onCount(-1)
	}
}

// nanos converts seconds to nanoseconds, rounded up and capped at a
// century, so that a tiny rate cannot overflow.
func nanos(seconds float64) int64 {
	const century = 100 * 365 * 24 * float64(time.Hour)
	return int64(math.Ceil(math.Min(seconds*float64(time.Second), century)))
}
