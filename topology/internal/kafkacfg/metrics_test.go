package kafkacfg

import (
	"testing"

	"github.com/rcrowley/go-metrics"
)

// sarama's metrics, registered and updated as sarama does, are neither
// kept nor measured.
func TestMetricsDiscarded(t *testing.T) {
	r := Config(Settings{Version: "3.6.0"}).MetricRegistry
	metrics.GetOrRegisterMeter("request-rate", r).Mark(3)
	metrics.GetOrRegisterCounter("requests-in-flight", r).Inc(1)
	h := r.GetOrRegister("request-latency-in-ms", func() metrics.Histogram {
		return metrics.NewHistogram(metrics.NewExpDecaySample(1028, 0.015))
	}).(metrics.Histogram)
	h.Update(12)
	for _, name := range []string{"request-rate", "requests-in-flight", "request-latency-in-ms"} {
		if m := r.Get(name); m != nil {
			t.Errorf("%s kept: %T", name, m)
		}
	}
	if h.Count() != 0 {
		t.Errorf("histogram counted %d updates", h.Count())
	}
}
