package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"

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

// store opens the Cassandra store of the history when --cassandra-hosts is
// set (read-only), or returns nil.
func (c *consoleFlags) store(ctx context.Context, log *slog.Logger) (sinks.Store, error) {
	if c.cassandra.hosts == "" {
		return nil, nil
	}
	st, err := c.cassandra.open(ctx, log, true)
	if err != nil {
		return nil, fmt.Errorf("the console's store: %w", err)
	}
	return st, nil
}

// consoleMetricsSource names the console's metrics for the log.
func consoleMetricsSource(m console.Metrics) string {
	if m == nil {
		return "none"
	}
	return m.Source()
}
