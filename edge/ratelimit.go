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
// entry (an 8-byte key and a 16-byte bucket) with Go's map overhead.
const bucketBytes = 64

// tokenBucket is one device's bucket: tokens available at last, in
// nanoseconds since the limiter's start.
type tokenBucket struct {
	tokens float64
	last   int64
}

// limiterShard holds the buckets of the devices whose id falls into it.
type limiterShard struct {
	mu      sync.Mutex
	buckets map[uint64]tokenBucket
	// swept is when the shard was last swept of full buckets.
	swept int64
}

// limiter is a token bucket per device id with bounded memory: at most
// maxDevices buckets (rounded up to a multiple of limiterShards). A bucket
// that has refilled to its burst is the same as no bucket, so full buckets
// are dropped when a shard is at its cap; if none is full, an arbitrary
// bucket of the shard is dropped, which gives that one device a fresh
// burst. Only authenticated requests reach the limiter, so filling it needs
// valid tokens of many devices.
type limiter struct {
	rate     float64 // tokens per second
	burst    float64
	perShard int
	// fill is the time an empty bucket takes to refill, in nanoseconds.
	fill   int64
	start  time.Time
	now    func() time.Time
	shards [limiterShards]limiterShard
	// onCount reports the change in the number of tracked devices.
	onCount func(delta int)
}

// newLimiter returns a limiter of rate tokens per second up to burst, for
// at most maxDevices devices. onCount receives every change in the number
// of buckets held.
func newLimiter(rate float64, burst, maxDevices int, now func() time.Time, onCount func(int)) *limiter {
	l := &limiter{
		rate:     rate,
		burst:    float64(burst),
		perShard: max(1, (maxDevices+limiterShards-1)/limiterShards),
		fill:     nanos(float64(burst) / rate),
		now:      now,
		onCount:  onCount,
	}
	l.start = now()
	for i := range l.shards {
		l.shards[i].buckets = make(map[uint64]tokenBucket)
	}
	return l
}

// allow takes one token of device id's bucket. When there is none it
// returns false and how long until there will be one.
func (l *limiter) allow(id uint64) (bool, time.Duration) {
	t := int64(l.now().Sub(l.start))
	// Fibonacci hashing spreads sequential ids over the shards.
	s := &l.shards[(id*0x9E3779B97F4A7C15)>>(64-6)]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[id]
	if !ok {
		s.makeRoom(l, t)
		b = tokenBucket{tokens: l.burst, last: t}
		l.onCount(1)
	} else if t > b.last {
		b.tokens = math.Min(l.burst, b.tokens+float64(t-b.last)/float64(time.Second)*l.rate)
		b.last = t
	}
	if b.tokens >= 1 {
		b.tokens--
		s.buckets[id] = b
		return true, 0
	}
	s.buckets[id] = b
	return false, time.Duration(nanos((1 - b.tokens) / l.rate))
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
			if t-b.last >= l.fill || b.tokens+float64(t-b.last)/float64(time.Second)*l.rate >= l.burst {
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
