package faults

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
)

// Front is an http.RoundTripper that spreads requests over several ingest
// edges in turn, like a load balancer in front of them. A request that
// cannot connect to an edge (it is down) goes to the next one; any other
// failure is returned as it is, so that the simulator counts it uncertain.
// When no edge accepts the connection the last dial error is returned, and
// the simulator knows that nothing was sent.
type Front struct {
	targets []*url.URL
	base    http.RoundTripper
	next    atomic.Uint64

	mu       sync.Mutex
	inflight []int
	stats    []EdgeStats
	nextID   uint64
	live     map[uint64]int // in-flight requests' edges, by id
	watches  []*Watch
}

// Watch follows the requests that were in flight at one edge when it was
// taken: how many of them then failed after connecting (their answer was
// lost, as when the edge is killed under them).
type Watch struct {
	ids    map[uint64]bool
	failed int
}

// EdgeStats counts what one edge was sent through a Front.
type EdgeStats struct {
	// Requests got an answer; Codes counts them by status.
	Requests int
	Codes    map[int]int
	// DialErrors could not connect; Errors failed after connecting.
	DialErrors, Errors int
}

// NewFront returns a Front over the edges' base URLs, sending with base
// (http.DefaultTransport when nil).
func NewFront(base http.RoundTripper, edges ...string) (*Front, error) {
	if len(edges) == 0 {
		return nil, errors.New("faults: front without edges")
	}
	if base == nil {
		base = http.DefaultTransport
	}
	f := &Front{base: base, inflight: make([]int, len(edges)), stats: make([]EdgeStats, len(edges)), live: map[uint64]int{}}
	for i, e := range edges {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("faults: edge URL %q: %w", e, errors.Join(err, errors.New("want scheme://host:port")))
		}
		f.targets = append(f.targets, u)
		f.stats[i].Codes = map[int]int{}
	}
	return f, nil
}

// RoundTrip sends req to the next edge, and on to the following ones while
// the connection is refused.
func (f *Front) RoundTrip(req *http.Request) (*http.Response, error) {
	first := int(f.next.Add(1) % uint64(len(f.targets)))
	var lastErr error
	for k := range f.targets {
		i := (first + k) % len(f.targets)
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = f.targets[i].Scheme, f.targets[i].Host, ""
		if k > 0 {
			if req.GetBody == nil {
				return nil, lastErr
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("faults: resend body: %w", err)
			}
			r.Body = body
		}
		id := f.begin(i)
		resp, err := f.base.RoundTrip(r)
		f.end(i, id, resp, err)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !dialError(err) {
			return nil, err
		}
	}
	return nil, lastErr
}

// begin counts a request to edge i in flight and returns its id.
func (f *Front) begin(i int) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight[i]++
	f.nextID++
	f.live[f.nextID] = i
	return f.nextID
}

// end counts the outcome of request id to edge i.
func (f *Front) end(i int, id uint64, resp *http.Response, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight[i]--
	delete(f.live, id)
	for _, w := range f.watches {
		if w.ids[id] && err != nil && !dialError(err) {
			w.failed++
		}
	}
	s := &f.stats[i]
	switch {
	case err == nil:
		s.Requests++
		s.Codes[resp.StatusCode]++
	case dialError(err):
		s.DialErrors++
	default:
		s.Errors++
	}
}

// Watch starts following the requests in flight at edge i now.
func (f *Front) Watch(i int) *Watch {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &Watch{ids: map[uint64]bool{}}
	for id, e := range f.live {
		if e == i {
			w.ids[id] = true
		}
	}
	f.watches = append(f.watches, w)
	return w
}

// Failed returns how many of w's requests failed after connecting so far.
func (f *Front) Failed(w *Watch) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return w.failed
}

// InFlight returns the requests waiting for an answer from edge i.
func (f *Front) InFlight(i int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight[i]
}

// Stats returns a copy of the per-edge counts.
func (f *Front) Stats() []EdgeStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]EdgeStats, len(f.stats))
	for i, s := range f.stats {
		out[i] = s
		out[i].Codes = make(map[int]int, len(s.Codes))
		for c, n := range s.Codes {
			out[i].Codes[c] = n
		}
	}
	return out
}

// dialError reports whether err is a failure to connect: the request did
// not reach the server.
func dialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
