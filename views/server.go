package views

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
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
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil keeps them
	// unregistered (the global registry is never used implicitly).
	Registerer prometheus.Registerer
	// RetryAfter is what 503 answers tell clients to wait (default 5s;
	// rounded up to whole seconds).
	RetryAfter time.Duration
}

// Server answers the view API. It is safe for concurrent use.
type Server struct {
	src        Source
	keys       Keys
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
	bodyMethod        = `{"error":"method not allowed"}` + "\n"
	bodyInternal      = `{"error":"internal error"}` + "\n"
)

// errorBody returns the JSON body {"error": msg} and a newline.
func errorBody(msg string) string {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg}) // a struct of one string: cannot fail
	return string(append(b, '\n'))
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("views: no source")
	}
	if opts.Keys.Len() == 0 {
		return nil, errors.New("views: no keys")
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
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	secs := int64(math.Ceil(opts.RetryAfter.Seconds()))
	return &Server{
		src:        opts.Source,
		keys:       opts.Keys,
		log:        opts.Logger,
		metrics:    m,
		retryAfter: strconv.FormatInt(secs, 10),
	}, nil
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
	sc := s.authenticate(r.Header)
	if sc == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="watershed"`)
		return s.write(w, http.StatusUnauthorized, bodyUnauthorized)
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		return s.write(w, http.StatusBadRequest, bodyQuery)
	}
	id, err := ParseDeviceID(rest)
	if err != nil {
		return s.write(w, http.StatusBadRequest, bodyMalformedID)
	}
	if err := s.src.Ready(); err != nil {
		w.Header().Set("Retry-After", s.retryAfter)
		return s.write(w, http.StatusServiceUnavailable, errorBody("not ready: "+err.Error()))
	}
	if !s.keys.sees(sc, id) {
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
	b, err := json.Marshal(newDeviceJSON(id, &st))
	if err != nil {
		s.log.Error("view: encode device state", "device_id", id, "error", err)
		return s.write(w, http.StatusInternalServerError, bodyInternal)
	}
	return s.write(w, http.StatusOK, string(append(b, '\n')))
}

// authenticate returns the scope of the request's bearer key, or nil when
// there is none or it is not a known key. The request must carry exactly
// one Authorization header, "Bearer KEY" (the scheme in any case, one
// space).
func (s *Server) authenticate(h http.Header) *scope {
	vals := h.Values("Authorization")
	if len(vals) != 1 {
		return nil
	}
	scheme, key, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil
	}
	return s.keys.lookup(key)
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
