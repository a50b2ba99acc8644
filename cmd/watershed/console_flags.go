package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"sync"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/console"
	"github.com/watershed-io/watershed/sinks"
)

// consoleFlags configure the console of `watershed view`: where it
// listens, where it reads the groups' metrics, and the store of the
// readings' history.
type consoleFlags struct {
	addr       string
	prometheus string
	metrics    string
	replay     bool
	cassandra  cassandraFlags
}

func (c *consoleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "console-addr", envOr("WATERSHED_CONSOLE_ADDR", ""), "address of a listener of the console's own, with --tls-cert when given (default: the console is on --ops-addr, under /console/) (env WATERSHED_CONSOLE_ADDR)")
	fs.StringVar(&c.prometheus, "console-prometheus", envOr("WATERSHED_CONSOLE_PROMETHEUS", ""), "base URL of a Prometheus that scrapes the processes, for the console's topology figures (env WATERSHED_CONSOLE_PROMETHEUS)")
	fs.StringVar(&c.metrics, "console-metrics", envOr("WATERSHED_CONSOLE_METRICS", ""), "the processes' /metrics URLs, comma-separated, for the console's topology figures when there is no Prometheus (env WATERSHED_CONSOLE_METRICS)")
	fs.BoolVar(&c.replay, "console-replay", envOr("WATERSHED_CONSOLE_REPLAY", "") == "true", "let keys of scope * replay dead letters from the console (dry runs are always allowed) (env WATERSHED_CONSOLE_REPLAY=true)")
	c.cassandra.register(fs)
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

// store returns the Cassandra store of the history when --cassandra-hosts
// is set (read-only), or nil. It connects at its first read, and again
// after a failure, so that the view starts and serves while Cassandra is
// not reachable.
func (c *consoleFlags) store(log *slog.Logger) (sinks.Store, error) {
	if c.cassandra.hosts == "" {
		return nil, nil
	}
	if _, err := c.cassandra.options(log); err != nil {
		return nil, err
	}
	return &lazyStore{open: func(ctx context.Context) (sinks.Store, error) {
		return c.cassandra.open(ctx, log, true)
	}}, nil
}

// lazyStore is a read-only store opened at its first read.
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
			return nil, fmt.Errorf("the console's store: %w", err)
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
	return errors.New("the console's store is read-only")
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
