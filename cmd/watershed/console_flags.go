package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"sync"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/console"
	"github.com/watershed-io/watershed/sinks"
)

// consoleFlags configure the console of `watershed view`: where it
// listens and where it reads the groups' metrics. The device history comes
// from the view's --history-store.
type consoleFlags struct {
	addr       string
	prometheus string
	metrics    string
	replay     bool
}

func (c *consoleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "console-addr", envOr("WATERSHED_CONSOLE_ADDR", ""), "address of a listener of the console's own, with --tls-cert when given (default: the console is on --ops-addr, under /console/) (env WATERSHED_CONSOLE_ADDR)")
	fs.StringVar(&c.prometheus, "console-prometheus", envOr("WATERSHED_CONSOLE_PROMETHEUS", ""), "base URL of a Prometheus that scrapes the processes, for the console's topology figures (env WATERSHED_CONSOLE_PROMETHEUS)")
	fs.StringVar(&c.metrics, "console-metrics", envOr("WATERSHED_CONSOLE_METRICS", ""), "the processes' /metrics URLs, comma-separated, for the console's topology figures when there is no Prometheus (env WATERSHED_CONSOLE_METRICS)")
	fs.BoolVar(&c.replay, "console-replay", envOr("WATERSHED_CONSOLE_REPLAY", "") == "true", "let keys of scope * replay dead letters from the console (dry runs are always allowed) (env WATERSHED_CONSOLE_REPLAY=true)")
}

// source returns the metrics the flags name, nil for none.
func (c *consoleFlags) source() (console.Metrics, error) {
	if c.prometheus != "" && c.metrics != "" {
		return nil, errors.New("--console-prometheus and --console-metrics exclude each other")
	}
	if c.prometheus != "" {
		return console.MetricsFromPrometheus(c.prometheus, nil)
	}
	urls := splitList(c.metrics)
	if len(urls) == 0 {
		return nil, nil
	}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("--console-metrics: %q is not an http(s) URL", u)
		}
	}
	return console.MetricsFromEndpoints(urls, nil), nil
}

// lazyStore is a read-only store opened at its first read, and again
// after a failure to open it.
type lazyStore struct {
	open func(ctx context.Context) (sinks.Store, error)
	mu   sync.Mutex
	st   sinks.Store
}

func (l *lazyStore) get(ctx context.Context) (sinks.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		st, err := l.open(ctx)
		if err != nil {
			return nil, fmt.Errorf("the history store: %w", err)
		}
		l.st = st
	}
	return l.st, nil
}

func (l *lazyStore) Readings(ctx context.Context, q sinks.Query) ([]records.Reading, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Readings(ctx, q)
}

func (l *lazyStore) Write(context.Context, []records.Reading) error {
	return errors.New("the history store is read-only")
}

// Summaries answers from the store when it keeps summaries.
func (l *lazyStore) Summaries(ctx context.Context, q sinks.SummaryQuery) ([]records.Summary, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	sums, ok := st.(sinks.SummaryStore)
	if !ok {
		return nil, errors.New("the history store keeps no summaries")
	}
	return sums.Summaries(ctx, q)
}

func (l *lazyStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		return nil
	}
	return l.st.Close()
}

// consoleMetricsSource names the console's metrics for the log.
func consoleMetricsSource(m console.Metrics) string {
	if m == nil {
		return "none"
	}
	return m.Source()
}
