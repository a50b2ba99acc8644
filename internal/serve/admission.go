package serve

import (
	"context"
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ClientKey is the address a per-client limit counts under: an IPv4
// address itself, an IPv6 address's /64 (one subscriber's usual share, so
// that one client cannot step around a cap by changing its low bits).
func ClientKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64) // cannot fail for an IPv6 address and 64
		return p.Addr()
	}
	return a
}

// addrOf returns the IP of a net.Addr, or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// Trusted reports whether a is in one of prefixes.
func Trusted(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// connLimiter is a net.Listener that closes a new connection at once when
// its client already holds max connections, so that one address cannot
// take the server's connections (and their goroutines) from the others.
// Connections from exempt prefixes (trusted proxies, which carry many
// clients) are not counted.
type connLimiter struct {
	net.Listener
	exempt  []netip.Prefix
	refused prometheus.Counter
	open    *Counter[netip.Addr]
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := addrOf(c.RemoteAddr())
		if !a.IsValid() || Trusted(l.exempt, a) {
			return c, nil
		}
		key := ClientKey(a)
		if !l.open.Acquire(key) {
			l.refused.Inc()
			_ = c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l, key: key}, nil
	}
}

// limitedConn gives its place back when it is closed, once.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	key  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Release(c.key) })
	return err
}

// counterShards is the number of independently locked parts of a counter.
const counterShards = 64

// Counter counts what each key holds at once, up to a limit a key, with
// bounded memory: a key is forgotten when its count returns to 0, so that
// it holds as many entries as there are holders. It is safe for concurrent
// use.
type Counter[K comparable] struct {
	max    int32
	seed   maphash.Seed
	shards [counterShards]counterShard[K]
}

type counterShard[K comparable] struct {
	mu sync.Mutex
	n  map[K]int32
}

// NewCounter returns a Counter of at most limit a key.
func NewCounter[K comparable](limit int) *Counter[K] {
	c := &Counter[K]{max: int32(limit), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].n = make(map[K]int32)
	}
	return c
}

func (c *Counter[K]) shard(k K) *counterShard[K] {
	return &c.shards[maphash.Comparable(c.seed, k)%counterShards]
}

// Acquire counts one more for k, unless k holds max already.
func (c *Counter[K]) Acquire(k K) bool {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.n[k]
	if n >= c.max {
		return false
	}
	s.n[k] = n + 1
	return true
}

// Release gives back one of k's.
func (c *Counter[K]) Release(k K) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.n[k]; n > 1 {
		s.n[k] = n - 1
	} else {
		delete(s.n, k)
	}
}

// admissionKey is the context key of a deferred admission.
type admissionKey struct{}

// admission is the concurrency slot of a request whose handler takes it
// itself (Options.DeferAdmission).
type admission struct {
	l     *limiter
	taken bool
}

// Admit takes the concurrency slot of a request that Options.DeferAdmission
// deferred: its handler calls it once it holds something worth a slot (the
// ingest edge, after the device's token was checked), so that requests that
// have not authenticated hold none. It returns false after answering 503
// (the server is at MaxConcurrentRequests); the slot is given back when the
// handler returns. Requests that were not deferred, or not served by a
// Server, are always admitted.
func Admit(w http.ResponseWriter, r *http.Request) bool {
	a, ok := r.Context().Value(admissionKey{}).(*admission)
	if !ok || a.taken {
		return true
	}
	select {
	case a.l.api <- struct{}{}:
		a.taken = true
		return true
	default:
		a.l.shedAnswer(w)
		return false
	}
}

// serveDeferred serves r without a slot; the handler may take one with
// Admit.
func (l *limiter) serveDeferred(w http.ResponseWriter, r *http.Request) {
	a := &admission{l: l}
	defer func() {
		if a.taken {
			<-l.api
		}
	}()
	l.next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), admissionKey{}, a)))
}
