package views

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/watershed-io/watershed/internal/serve"
)

// Defaults of Options.AuthFailureRate, AuthFailureBurst and
// MaxAuthFailureClients.
const (
	DefaultAuthFailureRate       = 1.0
	DefaultAuthFailureBurst      = 20
	DefaultMaxAuthFailureClients = 1 << 16
)

// authLimiter keeps a token bucket of failed authentications per client
// address: each failure takes a token, tokens come back at rate a second
// up to burst, and an address without a token has its bad keys answered
// 429 (a good key passes regardless). Only failures create buckets, so clients with good keys
// cost nothing, and the number of buckets is bounded.
type authLimiter struct {
	rate, burst float64
	max         int

	// n is len(buckets), read without the lock so that the common case
	// (no failures anywhere) takes no lock.
	n       atomic.Int64
	mu      sync.Mutex
	buckets map[netip.Addr]*authBucket
}

// authBucket is one address's tokens at a time.
type authBucket struct {
	tokens float64
	at     time.Time
}

func newAuthLimiter(rate float64, burst, max int) *authLimiter {
	return &authLimiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*authBucket)}
}

// clientKey returns what a client is limited by: its IPv4 address, or the
// /64 of its IPv6 address (serve.ClientKey, as the edge counts clients);
// the zero Addr when remoteAddr does not parse.
func clientKey(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return serve.ClientKey(ap.Addr())
}

// refill brings b to now.
func (l *authLimiter) refill(b *authBucket, now time.Time) {
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.at = now
	}
}

// blocked reports whether client has no token left, and when it has one
// again.
func (l *authLimiter) blocked(client netip.Addr, now time.Time) (time.Duration, bool) {
	if l.n.Load() == 0 {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		return 0, false
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), true
}

// failed takes a token from client's bucket.
func (l *authLimiter) failed(client netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &authBucket{tokens: l.burst, at: now}
		l.buckets[client] = b
		l.n.Store(int64(len(l.buckets)))
	}
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// evict makes room: buckets that have refilled are dropped (they hold no
// memory of failures); when too few have, arbitrary ones, which gives
// those clients a fresh burst. A sixteenth of the bound is freed at least,
// so that the scan is paid once per many new clients.
func (l *authLimiter) evict(now time.Time) {
	for c, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, c)
		}
	}
	keep := l.max - max(l.max/16, 1)
	for c := range l.buckets {
		if len(l.buckets) <= keep {
			break
		}
		delete(l.buckets, c)
	}
}
