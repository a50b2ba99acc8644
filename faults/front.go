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
	f := &Front{base: base, inflight: make([]int, len(edges)), stats: make([]EdgeStats, len(edges))}
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
		f.add(i, 1)
		resp, err := f.base.RoundTrip(r)
		f.add(i, -1)
		f.count(i, resp, err)
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

func (f *Front) add(i, n int) {
	f.mu.Lock()
	f.inflight[i] += n
	f.mu.Unlock()
}

func (f *Front) count(i int, resp *http.Response, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
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
