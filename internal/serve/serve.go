// Package serve holds the HTTP plumbing every watershed process shares: a
// server with timeouts, size limits and bounded concurrency, optional TLS,
// the health endpoints, the operators' listener, and graceful shutdown.
//
// # Public and operators' listeners
//
// A public listener (the ingest edge, the view API) answers only /healthz
// and /readyz besides its API (Health), with a status and no detail: no
// topic names, no error text. Everything that tells more about the process
// is on the operators' listener (ListenOps, --ops-addr, loopback by
// default): /metrics, /readyz with the reason when not ready, and the Go
// profiler under /debug/pprof/.
//
// # Hostile clients
//
// A client that is slow to send its headers is cut off after
// ReadHeaderTimeout (also when it trickles them byte by byte: the deadline
// is for the whole header), a whole request must arrive within
// ReadTimeout, and headers over MaxHeaderBytes are answered 431. Requests
// beyond MaxConcurrentRequests are answered 503 with Retry-After at once
// instead of queueing; the operational endpoints have a small allowance of
// their own, so that /healthz answers while the API is saturated. Body
// limits are the handlers' (the ingest edge reads at most one package).
//
// # TLS
//
// With TLSCertFile and TLSKeyFile the server speaks only TLS, 1.2 or later.
// It reads the certificate again when either file changes (checked at most
// once a second, on a handshake), so certificates are rotated by replacing
// the files, without a restart; a pair that does not load is logged and the
// previous one kept.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
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
	// MaxConcurrentRequests bounds the requests handled at once
	// (DefaultMaxConcurrentRequests); more are answered 503 with
	// Retry-After. GET /healthz and /readyz do not count: they have
	// OpsConcurrentRequests of their own.
	MaxConcurrentRequests int
	// TLSCertFile and TLSKeyFile, both set, make the server speak TLS
	// (1.2 or later) with this PEM certificate chain and key.
	TLSCertFile string
	TLSKeyFile  string
	// Registerer, when set, receives watershed_http_requests_shed_total.
	Registerer prometheus.Registerer
	// Logger receives the server's errors (default slog.Default()).
	Logger *slog.Logger
	// MaxConnsPerClient, when positive, bounds the open connections of one
	// client address (an IPv6 client's /64); more are closed as soon as
	// they are accepted (watershed_http_connections_refused_total).
	MaxConnsPerClient int
	// TrustedProxies are the peers exempt from MaxConnsPerClient: proxies
	// that carry the connections of many clients.
	TrustedProxies []netip.Prefix
	// DeferAdmission, when set, picks the requests that take no slot of
	// MaxConcurrentRequests on arrival: their handler takes one with Admit
	// once the request has authenticated.
	DeferAdmission func(*http.Request) bool
}

// DefaultMaxConcurrentRequests is the default of
// Options.MaxConcurrentRequests.
const DefaultMaxConcurrentRequests = 1024

// OpsConcurrentRequests is how many requests to the health endpoints are
// handled at once, apart from MaxConcurrentRequests, and how many the
// operators' listener handles at once.
const OpsConcurrentRequests = 16

// Server is a running HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	opts Options
	tls  bool
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
	if opts.MaxConcurrentRequests == 0 {
		opts.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if opts.MaxConcurrentRequests < 0 {
		return nil, fmt.Errorf("serve: negative MaxConcurrentRequests %d", opts.MaxConcurrentRequests)
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("serve: TLS needs both a certificate and a key file")
	}
	lim, err := newLimiter(handler, opts.MaxConcurrentRequests, opts.Registerer)
	if err != nil {
		return nil, err
	}
	lim.deferred = opts.DeferAdmission
	var tlsConfig *tls.Config
	if opts.TLSCertFile != "" {
		r, err := newCertReloader(opts.TLSCertFile, opts.TLSKeyFile, opts.Logger)
		if err != nil {
			return nil, err
		}
		tlsConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: r.getCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
		}
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("serve: listen on %s: %w", opts.Addr, err)
	}
	if opts.MaxConnsPerClient > 0 {
		refused := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watershed_http_connections_refused_total",
			Help: "Connections closed at once because their client address held the maximum of open connections.",
		})
		if opts.Registerer != nil {
			if err := opts.Registerer.Register(refused); err != nil {
				_ = ln.Close()
				return nil, fmt.Errorf("serve: register metrics: %w", err)
			}
		}
		ln = &connLimiter{Listener: ln, exempt: opts.TrustedProxies, refused: refused, open: NewCounter[netip.Addr](opts.MaxConnsPerClient)}
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	srv := &http.Server{
		Handler:           lim,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       opts.ReadTimeout,
		WriteTimeout:      opts.WriteTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return &Server{srv: srv, ln: ln, opts: opts, tls: tlsConfig != nil}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns http://ADDR, or https://ADDR with TLS.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

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

// opsPaths are the health endpoints, limited apart from the API.
var opsPaths = [...]string{"/healthz", "/readyz"}

// isOps reports whether r asks for a health endpoint.
func isOps(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, p := range opsPaths {
		if r.URL.Path == p {
			return true
		}
	}
	return false
}

// limiter answers 503 to requests beyond its bounds instead of queueing
// them.
type limiter struct {
	next     http.Handler
	api, ops chan struct{}
	shed     prometheus.Counter
	// deferred picks the requests whose handlers take their slot with
	// Admit; nil for none.
	deferred func(*http.Request) bool
}

func newLimiter(next http.Handler, maxRequests int, reg prometheus.Registerer) (*limiter, error) {
	l := &limiter{
		next: next,
		api:  make(chan struct{}, maxRequests),
		ops:  make(chan struct{}, OpsConcurrentRequests),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watershed_http_requests_shed_total",
			Help: "HTTP requests answered 503 at once because the server handled its maximum of concurrent requests.",
		}),
	}
	if reg != nil {
		if err := reg.Register(l.shed); err != nil {
			return nil, fmt.Errorf("serve: register metrics: %w", err)
		}
	}
	return l, nil
}

// overloadedBody is the answer to a shed request.
const overloadedBody = `{"error":"overloaded"}` + "\n"

func (l *limiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sem := l.api
	if isOps(r) {
		sem = l.ops
	} else if l.deferred != nil && l.deferred(r) {
		l.serveDeferred(w, r)
		return
	}
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
		l.next.ServeHTTP(w, r)
	default:
		l.shedAnswer(w)
	}
}

// shedAnswer answers 503 to a request beyond the bound.
func (l *limiter) shedAnswer(w http.ResponseWriter) {
	l.shed.Inc()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", "1")
	// The body, if any, is not read: the connection is not reused.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(overloadedBody))
}

// Health adds the public health endpoints to mux: /healthz (the process is
// alive) and /readyz, which answers 200 when ready returns nil and 503
// otherwise. Neither says more than that: the reason a process is not
// ready names topics and carries error text, which is for the operators'
// listener (OpsHandler).
func Health(mux *http.ServeMux, ready func() error) {
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ready() != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// OpsHandler returns the handler of the operators' listener: /metrics from
// gatherer, /healthz, /readyz with the reason when ready returns an error
// (503 "not ready: REASON"), and the Go profiler under /debug/pprof/
// (without /debug/pprof/cmdline: a command line may hold a secret).
func OpsHandler(gatherer prometheus.Gatherer, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		// Index serves the named profiles too; cmdline is not one of
		// runtime/pprof's, so it is not served.
		if r.URL.Path == "/debug/pprof/cmdline" {
			http.NotFound(w, r)
			return
		}
		pprof.Index(w, r)
	})
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// OpsWriteTimeout is the operators' listener's write timeout: longer than
// the default, so that a CPU profile or a trace of up to a minute fits.
const OpsWriteTimeout = 90 * time.Second

// ListenOps binds the operators' listener on addr (plain HTTP: bind it to
// loopback or a private network) and returns it; call Serve to start
// answering.
func ListenOps(addr string, gatherer prometheus.Gatherer, ready func() error, log *slog.Logger) (*Server, error) {
	return Listen(OpsHandler(gatherer, ready), OpsOptions(addr, log))
}

// OpsOptions are the options of an operators' listener on addr, for a
// caller that serves more on it (the console: mount OpsHandler beside it).
func OpsOptions(addr string, log *slog.Logger) Options {
	return Options{
		Addr:                  addr,
		WriteTimeout:          OpsWriteTimeout,
		MaxConcurrentRequests: OpsConcurrentRequests,
		Logger:                log,
	}
}
