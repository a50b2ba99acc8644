package main

import (
	"flag"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/internal/serve"
)

// Default operators' listeners, one port per command so that a demo and
// the processes of a trial on one machine do not collide.
const (
	defaultRunOpsAddr    = "127.0.0.1:9100"
	defaultIngestOpsAddr = "127.0.0.1:9101"
	defaultViewOpsAddr   = "127.0.0.1:9102"
	defaultDemoOpsAddr   = "127.0.0.1:9103"
)

// registerOpsAddr adds --ops-addr to fs with default def.
func registerOpsAddr(fs *flag.FlagSet, def string) *string {
	return fs.String("ops-addr", envOr("WATERSHED_OPS_ADDR", def),
		"address of the operators' listener: /metrics, /healthz, /readyz with the reason when not ready, /debug/pprof/; plain HTTP, keep it on loopback or a private network; empty: none (env WATERSHED_OPS_ADDR)")
}

// listenOps binds the operators' listener on addr, or returns nil when
// addr is empty.
func listenOps(addr string, reg prometheus.Gatherer, ready func() error, log *slog.Logger) (*serve.Server, error) {
	if addr == "" {
		return nil, nil
	}
	s, err := serve.ListenOps(addr, reg, ready, log)
	if err != nil {
		return nil, err
	}
	log.Info("operators' listener", "url", s.URL(), "metrics", s.URL()+"/metrics")
	return s, nil
}
