package views

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DevicesPath is the path prefix of the device resources.
const DevicesPath = "/v1/devices/"

// Options configure a Server.
type Options struct {
	// Source answers device states. Required.
	Source Source
	// Keys are the accepted API keys. Required, with at least one key.
	Keys Keys
	// Readings answers GET /v1/devices/{id}/readings (a sinks.Store);
	// nil: that path answers 404 not found.
	Readings ReadingSource
	// Summaries answers the closed windows of GET
	// /v1/devices/{id}/summaries (a sinks.SummaryStore); nil: that path
	// answers 404 not found.
	Summaries SummarySource
	// OpenWindows adds each device's open window to the summaries; nil:
	// closed windows only.
	OpenWindows OpenWindows
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil keeps them
	// unregistered (the global registry is never used implicitly).
	Registerer prometheus.Registerer
	// RetryAfter is what 503 answers tell clients to wait (default 5s;
	// rounded up to whole seconds).
	RetryAfter time.Duration
	// AllowShortKeys accepts keys shorter than MinKeyLength (the demo's,
	// on loopback); otherwise New and SetKeys refuse them.
	AllowShortKeys bool
	// AuthFailureRate and AuthFailureBurst limit failed authentications
	// per client address (IPv4 address or IPv6 /64): AuthFailureBurst at
	// once, then AuthFailureRate a second. A client past its limit has
	// its bad keys answered 429 with Retry-After until it has a token
	// again; a good key passes. Defaults DefaultAuthFailureRate and
	// DefaultAuthFailureBurst; a negative rate turns the limit off.
	AuthFailureRate  float64
	AuthFailureBurst int
	// MaxAuthFailureClients bounds the client addresses remembered for
	// the limit (DefaultMaxAuthFailureClients).
	MaxAuthFailureClients int
}

// Server answers the view API. It is safe for concurrent use.
type Server struct {
	src        Source
	readings   ReadingSource
	summaries  SummarySource
	open       OpenWindows
	keys       atomic.Pointer[Keys]
	allowShort bool
	limiter    *authLimiter // nil: no limit
	now        func() time.Time
	log        *slog.Logger
	metrics    *metrics
	retryAfter string
}

// Error bodies, constant so that answers that must not be told apart are
// byte-identical.
const (
	bodyUnknownDevice = `{"error":"unknown device"}` + "\n"
	bodyNotFound      = `{"error":"not found"}` + "\n"
	bodyMalformedID   = `{"error":"malformed device id"}` + "\n"
	bodyQuery         = `{"error":"unexpected query"}` + "\n"
	bodyUnauthorized  = `{"error":"unauthorized"}` + "\n"
	bodyTooMany       = `{"error":"too many failed authentications"}` + "\n"
	bodyNotReady      = `{"error":"not ready"}` + "\n"
	bodyMethod        = `{"error":"method not allowed"}` + "\n"
	bodyInternal      = `{"error":"internal error"}` + "\n"
)

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("views: no source")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	if opts.AuthFailureRate == 0 {
		opts.AuthFailureRate = DefaultAuthFailureRate
	}
	if opts.AuthFailureBurst <= 0 {
		opts.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if opts.MaxAuthFailureClients <= 0 {
		opts.MaxAuthFailureClients = DefaultMaxAuthFailureClients
	}
	s := &Server{
		src:        opts.Source,
		readings:   opts.Readings,
		summaries:  opts.Summaries,
		open:       opts.OpenWindows,
		allowShort: opts.AllowShortKeys,
		now:        time.Now,
		log:        opts.Logger,
		retryAfter: strconv.FormatInt(int64(math.Ceil(opts.RetryAfter.Seconds())), 10),
	}
	if opts.AuthFailureRate > 0 {
		s.limiter = newAuthLimiter(opts.AuthFailureRate, opts.AuthFailureBurst, opts.MaxAuthFailureClients)
	}
	if err := s.SetKeys(opts.Keys); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// SetKeys replaces the accepted keys; requests already past their
// authentication finish with the keys they were checked against. Keys
// must hold a key, and none shorter than MinKeyLength unless
// Options.AllowShortKeys.
func (s *Server) SetKeys(k Keys) error {
	if k.Len() == 0 {
		return errors.New("views: no keys")
	}
	if !s.allowShort {
		if err := k.CheckLength(); err != nil {
			return err
		}
	}
	s.keys.Store(&k)
	return nil
}

// Handler returns the handler of the view API. It answers every path: the
// caller mounts it (for instance on "/v1/devices/") beside the operational
// endpoints.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code := s.serve(w, r)
		s.metrics.answered(code, time.Since(start))
	})
}

// serve answers r and returns the status code it wrote.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) int {
	// The escaped path, so that "%31" is not taken for "1".
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), DevicesPath)
	if !ok {
		return s.write(w, http.StatusNotFound, bodyNotFound)
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return s.write(w, http.StatusMethodNotAllowed, bodyMethod)
	}
	acc, code := s.authenticate(w, r)
	if code != 0 {
		return code
	}
	rest, sub, hasSub := strings.Cut(rest, "/")
	switch {
	case !hasSub:
	case sub == readingsSub && s.readings != nil, sub == summariesSub && s.summaries != nil:
		return s.serveHistory(w, r, acc, rest, sub)
	case sub == readingsSub, sub == summariesSub:
		return s.write(w, http.StatusNotFound, bodyNotFound)
	default:
		return s.write(w, http.StatusBadRequest, bodyMalformedID)
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		return s.write(w, http.StatusBadRequest, bodyQuery)
	}
	id, err := ParseDeviceID(rest)
	if err != nil {
		return s.write(w, http.StatusBadRequest, bodyMalformedID)
	}
	// The reason names topics and carries error text: it is for the
	// operators' listener, not for API clients.
	if s.src.Ready() != nil {
		w.Header().Set("Retry-After", s.retryAfter)
		return s.write(w, http.StatusServiceUnavailable, bodyNotReady)
	}
	if !acc.Sees(id) {
		return s.write(w, http.StatusNotFound, bodyUnknownDevice)
	}
	st, found, err := s.src.Get(id)
	if err != nil {
		s.log.Error("view: get device state", "device_id", id, "error", err)
		return s.write(w, http.StatusInternalServerError, bodyInternal)
	}
	if !found {
		return s.write(w, http.StatusNotFound, bodyUnknownDevice)
	}
	b, err := MarshalDevice(id, &st)
	if err != nil {
		s.log.Error("view: encode device state", "device_id", id, "error", err)
		return s.write(w, http.StatusInternalServerError, bodyInternal)
	}
	return s.write(w, http.StatusOK, string(append(b, '\n')))
}

// serveHistory answers an authenticated request for the readings or the
// summaries (sub) of device idText: id and query (400), scope (404), the
// store (503, 500), 200. The store answers for itself, so the device-state
// table's readiness is not asked.
func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request, acc Access, idText, sub string) int {
	id, err := ParseDeviceID(idText)
	if err != nil {
		return s.write(w, http.StatusBadRequest, bodyMalformedID)
	}
	q, msg := parseHistoryQuery(r.URL.RawQuery, s.now(), sub == readingsSub)
	if msg != "" {
		return s.write(w, http.StatusBadRequest, badRequest(msg))
	}
	if !acc.Sees(id) {
		return s.write(w, http.StatusNotFound, bodyUnknownDevice)
	}
	if sub == readingsSub {
		return s.serveReadings(w, r, id, q)
	}
	return s.serveSummaries(w, r, id, q)
}

// authenticate returns the scope of the request's bearer key, or nil when
// there is none or it is not a known key. The request must carry exactly
// one Authorization header, "Bearer KEY" (the scheme in any case, one
// space).
func authenticate(keys *Keys, h http.Header) *scope {
	vals := h.Values("Authorization")
	if len(vals) != 1 {
		return nil
	}
	scheme, key, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil
	}
	return keys.lookup(key)
}

// write writes a JSON answer and returns code.
func (s *Server) write(w http.ResponseWriter, code int, body string) int {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
	return code
}
