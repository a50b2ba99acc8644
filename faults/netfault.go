package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// ProxySpec is one TCP proxy: it accepts connections on Listen and relays
// them to Upstream.
type ProxySpec struct {
	Name, Listen, Upstream string
}

// ParseProxySpecs reads "listen>upstream,listen>upstream" (what
// `infra.sh env` prints for a cluster) into specs named prefix-1,
// prefix-2, ... in order.
func ParseProxySpecs(prefix, s string) ([]ProxySpec, error) {
	var out []ProxySpec
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		listen, upstream, ok := strings.Cut(item, ">")
		if !ok || listen == "" || upstream == "" {
			return nil, fmt.Errorf("faults: proxy %q: want listen>upstream", item)
		}
		out = append(out, ProxySpec{Name: fmt.Sprintf("%s-%d", prefix, len(out)+1), Listen: listen, Upstream: upstream})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("faults: no proxies in %q", s)
	}
	return out, nil
}

// Proxies runs Shopify's toxiproxy in process: TCP proxies between the
// pipeline's processes and the brokers and Cassandra nodes, into which the
// fault test injects network faults (toxics): latency, connection resets,
// and a blackhole that swallows every byte.
type Proxies struct {
	mu      sync.Mutex
	byName  map[string]*toxiproxy.Proxy
	order   []string
	nextID  atomic.Uint64
	stopped bool
}

// NewProxies starts a proxy for each spec.
func NewProxies(specs []ProxySpec) (*Proxies, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := &Proxies{byName: map[string]*toxiproxy.Proxy{}}
	for _, s := range specs {
		px := toxiproxy.NewProxy(srv, s.Name, s.Listen, s.Upstream)
		if err := px.Start(); err != nil {
			p.Close()
			return nil, fmt.Errorf("faults: proxy %s on %s: %w", s.Name, s.Listen, err)
		}
		p.byName[s.Name] = px
		p.order = append(p.order, s.Name)
	}
	return p, nil
}

// Names returns the proxies' names in the order of their specs.
func (p *Proxies) Names() []string { return append([]string(nil), p.order...) }

// Listens returns the listen addresses of the named proxies.
func (p *Proxies) Listens(names ...string) []string {
	var out []string
	for _, n := range names {
		if px := p.byName[n]; px != nil {
			out = append(out, px.Listen)
		}
	}
	return out
}

// Toxic is a toxiproxy toxic: Type is "latency", "reset_peer", "timeout",
// and so on, Attributes its settings (toxiproxy's documentation lists
// them). It acts on both directions of every connection.
type Toxic struct {
	Type       string
	Attributes map[string]any
}

// Latency delays every chunk of data by ms milliseconds, give or take
// jitter.
func Latency(ms, jitter int) Toxic {
	return Toxic{Type: "latency", Attributes: map[string]any{"latency": ms, "jitter": jitter}}
}

// Reset resets every connection with a TCP RST (new ones as soon as they
// send data) while it is in place.
func Reset() Toxic { return Toxic{Type: "reset_peer", Attributes: map[string]any{"timeout": 0}} }

// Blackhole swallows every byte without closing connections, as a network
// partition does, while it is in place.
func Blackhole() Toxic { return Toxic{Type: "timeout", Attributes: map[string]any{"timeout": 0}} }

// Add puts toxic on the named proxies, both directions, and returns the
// function that takes it away again.
func (p *Proxies) Add(toxic Toxic, names ...string) (remove func() error, err error) {
	type added struct {
		px   *toxiproxy.Proxy
		name string
	}
	var done []added
	remove = func() error {
		var errs []error
		for _, a := range done {
			if err := a.px.Toxics.RemoveToxic(context.Background(), a.name); err != nil {
				errs = append(errs, fmt.Errorf("faults: remove toxic %s: %w", a.name, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, n := range names {
		px := p.byName[n]
		if px == nil {
			_ = remove()
			return nil, fmt.Errorf("faults: no proxy %q", n)
		}
		for _, stream := range []string{"upstream", "downstream"} {
			name := fmt.Sprintf("%s-%s-%d", toxic.Type, stream, p.nextID.Add(1))
			b, err := json.Marshal(map[string]any{"name": name, "type": toxic.Type, "stream": stream, "toxicity": 1.0, "attributes": toxic.Attributes})
			if err != nil {
				_ = remove()
				return nil, fmt.Errorf("faults: toxic: %w", err)
			}
			if _, err := px.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
				_ = remove()
				return nil, fmt.Errorf("faults: add toxic %s to %s: %w", toxic.Type, n, err)
			}
			done = append(done, added{px, name})
		}
	}
	return remove, nil
}

// Close stops every proxy.
func (p *Proxies) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	for _, px := range p.byName {
		px.Stop()
	}
}
