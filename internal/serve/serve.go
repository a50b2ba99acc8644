// Package serve holds the HTTP plumbing every watershed process shares: a
// server with timeouts and size limits, the operational endpoints
// (/metrics, /healthz, /readyz), and graceful shutdown.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server. Zero durations take the defaults shown.
type Options struct {
	// Addr is the host:port to listen on (":0" picks a free port).
	Addr string
	// ReadHeaderTimeout cuts off a client that is slow to send its headers (5s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request (30s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (30s).
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections (120s).
	IdleTimeout time.Duration
	// MaxHeaderBytes limits the request headers (16 KiB).
	MaxHeaderBytes int
	// ShutdownTimeout bounds the graceful shutdown (10s).
	ShutdownTimeout time.Duration
	// Logger receives the server's errors (default slog.Default()).
	Logger *slog.Logger
}

// Server is a running HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	opts Options
}

// Listen binds opts.Addr and returns a server for handler. Call Serve to
// start answering.
func Listen(handler http.Handler, opts Options) (*Server, error) {
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = 5 * time.Second
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 30 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 120 * time.Second
	}
	if opts.MaxHeaderBytes == 0 {
		opts.MaxHeaderBytes = 16 << 10
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("serve: listen on %s: %w", opts.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       opts.ReadTimeout,
		WriteTimeout:      opts.WriteTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return &Server{srv: srv, ln: ln, opts: opts}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns http://ADDR.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Serve answers requests until ctx is cancelled, then stops accepting new
// connections and waits for in-flight requests (up to ShutdownTimeout).
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Ops adds the operational endpoints to mux: /metrics from gatherer,
// /healthz (the process is alive), and /readyz, which answers 200 when
// ready returns nil and 503 with the reason otherwise.
func Ops(mux *http.ServeMux, gatherer prometheus.Gatherer, ready func() error) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
