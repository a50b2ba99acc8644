package kafkacfg

import (
	"reflect"

	"github.com/rcrowley/go-metrics"
)

// discard is a sarama metric registry that keeps nothing. sarama updates a
// dozen meters and histograms per request it sends (rates, sizes, latency,
// per broker and per topic; each histogram update takes a lock and a
// time-decayed sample), and nothing in watershed reads them: its metrics
// are the Prometheus ones. The metrics it hands out do nothing.
type discard struct{}

func (discard) Each(func(string, any))            {}
func (discard) Get(string) any                    { return nil }
func (discard) GetAll() map[string]map[string]any { return nil }
func (discard) Register(string, any) error        { return nil }
func (discard) RunHealthchecks()                  {}
func (discard) Unregister(string)                 {}
func (discard) UnregisterAll()                    {}

// GetOrRegister returns a metric that does nothing, of the kind m (a
// metric or its constructor, as sarama passes them) would make.
func (discard) GetOrRegister(_ string, m any) any {
	switch m.(type) {
	case func() metrics.Meter, metrics.Meter:
		return metrics.NilMeter{}
	case func() metrics.Histogram, metrics.Histogram:
		return metrics.NilHistogram{}
	case func() metrics.Counter, metrics.Counter:
		return metrics.NilCounter{}
	case func() metrics.Gauge, metrics.Gauge:
		return metrics.NilGauge{}
	}
	// Another kind: made, and not kept.
	if v := reflect.ValueOf(m); v.Kind() == reflect.Func && v.Type().NumIn() == 0 && v.Type().NumOut() == 1 {
		return v.Call(nil)[0].Interface()
	}
	return m
}
