package views

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the view API's Prometheus collectors; see the package
// comment.
type metrics struct {
	requests    *prometheus.CounterVec
	duration    prometheus.Histogram
	authFailed  prometheus.Counter
	authLimited prometheus.Counter
	reloads     *prometheus.CounterVec
	keysStale   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_view_requests_total",
			Help: "Requests answered by the view API, by HTTP status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "watershed_view_request_duration_seconds",
			Help:    "Time the view API took to answer a request.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		authFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watershed_view_auth_failures_total",
			Help: "Requests the view API answered 401: no key, a malformed Authorization header, or an unknown key.",
		}),
		authLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watershed_view_auth_rate_limited_total",
			Help: "Requests the view API answered 429 without looking at their key, because their client address failed to authenticate too often.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_view_key_reloads_total",
			Help: "Reloads of the view API's keys after a change of their files or a SIGHUP, by result (ok, error).",
		}, []string{"result"}),
		keysStale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "watershed_view_keys_stale",
			Help: "1 while the key files on disk do not load and the view API serves the keys loaded before; 0 otherwise.",
		}),
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.authFailed, m.authLimited, m.reloads, m.keysStale} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("views: register metrics: %w", err)
		}
	}
	return m, nil
}

// answered counts a response with status code that took d.
func (m *metrics) answered(code int, d time.Duration) {
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	m.duration.Observe(d.Seconds())
}
