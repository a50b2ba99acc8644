package grafana

import (
	"slices"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`sum by (code) (rate(watershed_edge_requests_total[$__rate_interval]))`, []string{"watershed_edge_requests_total"}},
		{`sum(rate(a_total{code="202", x=~"a|b"}[5m])) by (group)`, []string{"a_total"}},
		{`histogram_quantile(0.99, sum by (group, le) (rate(d_seconds_bucket{group=~"sink|sink-retry"}[${interval}])))`, []string{"d_seconds_bucket"}},
		{`sum by (g) (rate(r_sum[1m])) / sum by (g) (rate(r_count[1m]))`, []string{"r_sum", "r_count"}},
		{`a / on (group) group_left (topic) b`, []string{"a", "b"}},
		{`a > bool 3 and ignoring (x) b unless c or d`, []string{"a", "b", "c", "d"}},
		{`rate(a[5m] offset 1h) * 1e3 + 0x1f`, []string{"a"}},
		{`max_over_time(a[1h:5m]) @ start()`, []string{"a"}},
		{`{__name__="named_by_matcher", job="x"}`, []string{"named_by_matcher"}},
		{`{__name__=~"regex.*"}`, nil},
		{`label_replace(a, "dst", "by (x) b", "src", "(.*)")`, []string{"a"}},
		{`count_values("value", a{l="}"})`, []string{"a"}},
		{`a:recorded:rate5m # a comment naming not_a_metric`, []string{"a:recorded:rate5m"}},
		{`sum without (instance) (a) + a`, []string{"a"}},
		{`vector(1)`, nil},
		{`time() - process_start_time_seconds`, []string{"process_start_time_seconds"}},
	} {
		got, err := metricNames(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%s) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestMetricNamesRejectsMalformed(t *testing.T) {
	for _, expr := range []string{`a{b="c"`, `rate(a[5m)`, `a{b="c}`, `sum by (x`, `"open`} {
		if got, err := metricNames(expr); err == nil {
			t.Errorf("metricNames(%s) = %q, want an error", expr, got)
		}
	}
}
