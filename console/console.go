// Package console is watershed's operators' console: a few pages in the
// browser over the running pipeline, and the JSON endpoints they read.
//
//   - Topology: the declared topology as a graph (topics, tables, groups,
//     edges), each group coloured by its health, with its replicas,
//     partitions owned, records in and out per second, consumer lag and
//     restarts, read from the processes' metrics (Metrics).
//   - Dead letters: counts by reason and stage over time, the envelopes
//     with filters, and replay through package dlq, a dry run first.
//   - Device: its latest state from the view, the track of its recent GPS
//     fixes, speed and battery over time from the store, its alerts.
//
// The pages are plain HTML, CSS and JavaScript drawing SVG, embedded in the
// binary: nothing is fetched from elsewhere at run time. The server is
// mounted under Prefix, on the operators' listener or a listener of its
// own.
//
// # Keys
//
// Every endpoint under Prefix+"api/" takes the view API's keys
// ("Authorization: Bearer KEY"), checked by the view API's server
// (views.Server.Authenticate: the same keys, reloads and failed-auth
// limit). The login page keeps the key in the tab's sessionStorage, so that
// it lasts the browser session and is sent only by the console's own
// scripts (no cookie: no cross-site request carries it). The topology and
// the dead letters need a key that sees every device ("*"); a narrower key
// sees the devices of its scope only. A request takes a slot of the
// listener's concurrency (serve.Admit) and, for the endpoints that read
// Kafka or the store, one of MaxReads, only once its key was checked:
// requests without a valid key hold nothing shared. Keys are never logged.
package console

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/views"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

//go:embed assets
var assets embed.FS

// Authenticator checks a request's key; *views.Server is one.
type Authenticator interface {
	Authenticate(w http.ResponseWriter, r *http.Request) (views.Access, bool)
}

// Options configure a Server.
type Options struct {
	// Topology is the declared topology the pages draw. Required.
	Topology topology.Description
	// Auth checks keys. Required.
	Auth Authenticator
	// Devices answers the devices' latest states. Required.
	Devices views.Source
	// Store holds the readings' history; nil: the device page shows the
	// latest state only.
	Store sinks.Store
	// Kafka reaches the cluster of the dead-letter and alerts topics; nil:
	// neither is read.
	Kafka *topology.Kafka
	// AlertsTopic is the topic of the alerts, keyed by device id ("": no
	// alerts on the device page).
	AlertsTopic string
	// Metrics is where the groups' figures come from; nil: the graph shows
	// the topology without them.
	Metrics Metrics
	// Replay lets keys of scope * replay dead letters (dry runs are always
	// allowed): replaying writes to the pipeline's topics, which a read key
	// of the view API could not do before.
	Replay bool
	// MaxReads bounds the requests that read Kafka or the store at once
	// (default 4); more are answered 503.
	MaxReads int
	// Logger receives errors (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server serves the console. It is safe for concurrent use.
type Server struct {
	opts  Options
	log   *slog.Logger
	reads chan struct{}
	graph Graph
	// replayTo are the topics replay may write to: every declared topic
	// but the dead-letter topic.
	replayTo []string
	// replay serialises replays: each reads the replayed topic's markers
	// before writing, so two at once could replay a dead letter twice.
	replay sync.Mutex
	static http.Handler
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Auth == nil || opts.Devices == nil {
		return nil, errors.New("console: Auth and Devices are required")
	}
	if len(opts.Topology.Groups) == 0 {
		return nil, errors.New("console: the topology has no group")
	}
	if opts.MaxReads <= 0 {
		opts.MaxReads = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, reads: make(chan struct{}, opts.MaxReads),
		graph: Layout(opts.Topology), static: http.FileServerFS(sub)}
	for _, t := range opts.Topology.Topics {
		if t.Name != opts.Topology.DeadLetterTopic {
			s.replayTo = append(s.replayTo, t.Name)
		}
	}
	return s, nil
}

// DefersAdmission reports whether r is for the console, whose handler
// takes its concurrency slot once the key was checked: pass it as
// serve.Options.DeferAdmission of the listener the console is on.
func DefersAdmission(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, Prefix) }

// Handler returns the console's handler; mount it on Prefix.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", s.page)
	mux.HandleFunc("GET "+Prefix+"static/", s.asset)
	api := Prefix + "api/"
	mux.Handle("GET "+api+"session", s.guard(false, false, s.session))
	mux.Handle("GET "+api+"topology", s.guard(true, false, s.topology))
	mux.Handle("GET "+api+"deadletters/stats", s.guard(true, true, s.deadLetterStats))
	mux.Handle("GET "+api+"deadletters", s.guard(true, true, s.deadLetters))
	mux.Handle("POST "+api+"deadletters/replay", s.guard(true, true, s.replayDeadLetters))
	mux.Handle("GET "+api+"devices/{id}", s.guard(false, true, s.device))
	mux.HandleFunc(api, func(w http.ResponseWriter, r *http.Request) {
		// Unknown API paths and methods say no more than 404 before the
		// key is checked.
		writeError(w, http.StatusNotFound, "not found")
	})
	return secureHeaders(mux)
}

// secureHeaders sets the headers every answer of the console carries: the
// pages load only their own scripts and styles and are not framed.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// page serves the single page; the scripts route within it.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/"
	w.Header().Set("Cache-Control", "no-cache")
	s.static.ServeHTTP(w, r2)
}

// asset serves the embedded scripts and styles.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + strings.TrimPrefix(r.URL.Path, Prefix+"static/")
	if r2.URL.Path == "/" || strings.HasSuffix(r2.URL.Path, "/") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	s.static.ServeHTTP(w, r2)
}

// apiHandler answers an authenticated request.
type apiHandler func(w http.ResponseWriter, r *http.Request, acc views.Access)

// guard checks the key (all: it must see every device), then takes the
// listener's slot and, with reads, one of MaxReads.
func (s *Server) guard(all, reads bool, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		acc, ok := s.opts.Auth.Authenticate(w, r)
		if !ok {
			return
		}
		if all && !acc.All() {
			writeError(w, http.StatusForbidden, "this page needs a key that sees every device (scope *)")
			return
		}
		if !serve.Admit(w, r) {
			return
		}
		if reads {
			select {
			case s.reads <- struct{}{}:
				defer func() { <-s.reads }()
			default:
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusServiceUnavailable, "busy: too many reads at once")
				return
			}
		}
		h(w, r, acc)
	})
}

// session answers whether the key is good and what it sees.
func (s *Server) session(w http.ResponseWriter, _ *http.Request, acc views.Access) {
	scope := "some devices"
	if acc.All() {
		scope = "every device"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"scope": scope, "all": acc.All(), "topology": s.opts.Topology.Name,
		"history": s.opts.Store != nil, "dead_letters": s.opts.Kafka != nil, "replay": s.opts.Replay,
	})
}

// writeJSON writes v as the JSON answer.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// writeError writes {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// badRequest is an input error, answered 400 with its text.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

// fail answers err: 400 with its text for bad input, otherwise 500 with
// the detail logged (it may name hosts; the page says where to look).
func (s *Server) fail(w http.ResponseWriter, what string, err error) {
	var br badRequest
	if errors.As(err, &br) {
		writeError(w, http.StatusBadRequest, br.msg)
		return
	}
	s.log.Error("console: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, what+" failed; the process's log says why")
}

// Mount returns ops (the operators' listener's handler) with the console
// mounted under Prefix. Serve it with serve.Options.DeferAdmission set to
// DefersAdmission.
func (s *Server) Mount(ops http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", ops)
	mux.Handle(Prefix, s.Handler())
	return mux
}
