package main

import (
	"errors"
	"flag"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/internal/serve"
)

// serverFlags are the flags of an HTTP server that faces clients: TLS and
// the bound on concurrent requests.
type serverFlags struct {
	tlsCert     string
	tlsKey      string
	maxRequests int
}

func (s *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tlsCert, "tls-cert", envOr("WATERSHED_TLS_CERT", ""), "PEM certificate chain: serve HTTPS only (TLS 1.2+) with it and --tls-key; replaced files are picked up without a restart (env WATERSHED_TLS_CERT)")
	fs.StringVar(&s.tlsKey, "tls-key", envOr("WATERSHED_TLS_KEY", ""), "PEM private key of --tls-cert (env WATERSHED_TLS_KEY)")
	fs.IntVar(&s.maxRequests, "max-requests", envInt("WATERSHED_MAX_REQUESTS", serve.DefaultMaxConcurrentRequests), "requests handled at once; more are answered 503 with Retry-After (env WATERSHED_MAX_REQUESTS)")
}

// check reports flag values that cannot work.
func (s *serverFlags) check() error {
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if s.maxRequests < 1 {
		return errors.New("--max-requests must be at least 1")
	}
	return nil
}

// options returns the serve options for addr.
func (s *serverFlags) options(addr string, reg prometheus.Registerer, log *slog.Logger) serve.Options {
	return serve.Options{
		Addr:                  addr,
		TLSCertFile:           s.tlsCert,
		TLSKeyFile:            s.tlsKey,
		MaxConcurrentRequests: s.maxRequests,
		Registerer:            reg,
		Logger:                log,
	}
}
