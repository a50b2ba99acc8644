package edge

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the edge's Prometheus collectors; see the package comment.
type metrics struct {
	requests        *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	inflight        prometheus.Gauge
	produceDuration prometheus.Histogram
	packageBytes    prometheus.Histogram
	// rateLimited counts requests refused by the per-device rate limit.
	rateLimited prometheus.Counter
	// rateLimitedDevices is the number of device buckets held.
	rateLimitedDevices prometheus.Gauge
	// unauthenticated is the number of requests reading their package
	// header, before the token is checked.
	unauthenticated prometheus.Gauge
	// v1Tokens counts accepted version 1 tokens.
	v1Tokens prometheus.Counter
	// revokedDevices is the revocation file's entries;
	// revocationReloads counts its loads by result.
	revokedDevices    prometheus.Gauge
	revocationReloads *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_edge_requests_total",
			Help: "Package requests answered by the ingest edge, by HTTP status code.",
		}, []string{"code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_edge_rejected_total",
			Help: "Package requests not accepted by the ingest edge, by reason.",
		}, []string{"reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "watershed_edge_inflight_bytes",
			Help: "Request-body bytes held by the ingest edge, from reading until Kafka answered.",
		}),
		produceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "watershed_edge_produce_duration_seconds",
			Help:    "Time from handing a record to the producer to Kafka's answer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		packageBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "watershed_edge_package_bytes",
			Help:    "Sizes of the request bodies read by the ingest edge.",
			Buckets: prometheus.ExponentialBuckets(64, 4, 9), // 64 B .. 4 MiB
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watershed_edge_rate_limited_total",
			Help: "Authenticated package requests answered 429 because their device was over its rate.",
		}),
		rateLimitedDevices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "watershed_edge_rate_limiter_devices",
			Help: "Devices whose token buckets the ingest edge's per-device rate limiter holds.",
		}),
		unauthenticated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "watershed_edge_unauthenticated_requests",
			Help: "Package requests the ingest edge is reading the package header of, before their token is checked.",
		}),
		v1Tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watershed_edge_v1_tokens_total",
			Help: "Package requests the ingest edge accepted with a version 1 (never expiring) device token.",
		}),
		revokedDevices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "watershed_edge_revoked_devices",
			Help: "Devices listed in the ingest edge's revocation file as loaded.",
		}),
		revocationReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watershed_edge_revocation_reloads_total",
			Help: "Loads of the ingest edge's revocation file after a change or SIGHUP, by result (ok, error).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.rejected, m.inflight, m.produceDuration, m.packageBytes, m.rateLimited, m.rateLimitedDevices, m.unauthenticated, m.v1Tokens, m.revokedDevices, m.revocationReloads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("edge: register metrics: %w", err)
		}
	}
	return m, nil
}

// answered counts a response with status code.
func (m *metrics) answered(code int) {
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}
