package dlq

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// alertRules is the alert rule file, relative to this package.
const alertRules = "../deploy/prometheus/alerts.yml"

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): run `make tools`", err)
	}
	return p
}

func TestAlertRulesPassPromtoolCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", alertRules).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertRules, err, out)
	}
}

// alertRulesTests are promtool unit tests of the rules: each evaluates
// ALERTS{alertstate="firing"} at a time and lists exactly the alerts that
// must fire then, so that an alert that fires too eagerly fails as well.
const alertRulesTests = `
rule_files:
  - RULES
evaluation_interval: 1m
tests:
  # Lag: decode is 20000 behind on one partition (reported by two
  # instances, which must not count twice) and steady; sink falls behind
  # by 200 records a minute.
  - interval: 1m
    input_series:
      - series: 'watershed_consumer_lag{group="decode",topic="telemetry.raw",partition="0",instance="a"}'
        values: '20000x40'
      - series: 'watershed_consumer_lag{group="decode",topic="telemetry.raw",partition="0",instance="b"}'
        values: '20000x40'
      - series: 'watershed_consumer_lag{group="decode",topic="telemetry.raw",partition="1",instance="a"}'
        values: '0x40'
      - series: 'watershed_consumer_lag{group="sink",topic="telemetry.normalized",partition="0",instance="a"}'
        values: '0+200x40'
      - series: 'watershed_consumer_lag{group="alerts",topic="telemetry.normalized",partition="0",instance="a"}'
        values: '6000x40'
      - series: 'watershed_processor_recovered{group="dedupe",instance="a"}'
        values: '0x40'
      - series: 'watershed_processor_recovered{group="decode",instance="a"}'
        values: '1x40'
    promql_expr_test:
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 5m
        exp_samples: []
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 35m
        exp_samples:
          - labels: 'ALERTS{alertname="WatershedConsumerLagHigh",alertstate="firing",group="decode",topic="telemetry.raw",severity="warning"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedConsumerLagGrowing",alertstate="firing",group="sink",topic="telemetry.normalized",severity="warning"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedProcessorNotRecovered",alertstate="firing",group="dedupe",instance="a",severity="warning"}'
            value: 1
  # Dead letters: decode rejects 1 record a second, sink 1 a minute (under
  # the threshold); the edge dead-letters 2 packages a second of 12.
  - interval: 1m
    input_series:
      - series: 'watershed_processor_dead_letters_total{group="decode",reason="header_crc",instance="a"}'
        values: '0+60x40'
      - series: 'watershed_processor_dead_letters_total{group="sink",reason="sink_refused",instance="a"}'
        values: '0+1x40'
      - series: 'watershed_edge_requests_total{code="202",instance="e"}'
        values: '0+600x40'
      - series: 'watershed_edge_requests_total{code="422",instance="e"}'
        values: '0+120x40'
      - series: 'watershed_edge_requests_total{code="503",instance="e"}'
        values: '0x40'
      - series: 'watershed_edge_rejected_total{reason="zero_device",instance="e"}'
        values: '0+120x40'
      - series: 'watershed_edge_rejected_total{reason="overloaded",instance="e"}'
        values: '0+300x40'
      - series: 'watershed_dlq_oldest_age_seconds{instance="a"}'
        values: '3600x40'
      - series: 'watershed_dead_letters_truncated_total{group="decode",instance="a"}'
        values: '0x20 1x20'
      - series: 'watershed_dead_letters_truncated_total{group="sink",instance="a"}'
        values: '0x40'
    promql_expr_test:
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 30m
        exp_samples:
          - labels: 'ALERTS{alertname="WatershedDeadLettersGrowing",alertstate="firing",group="decode",reason="header_crc",severity="warning"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedEdgeDeadLettersGrowing",alertstate="firing",severity="warning"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedEdgeMalformedPackagesHigh",alertstate="firing",severity="warning"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedDeadLettersTruncated",alertstate="firing",group="decode",severity="info"}'
            value: 1
  # Edge 5xx: 60 of 660 answers a minute are 503; and a dead letter older
  # than three weeks.
  - interval: 1m
    input_series:
      - series: 'watershed_edge_requests_total{code="202",instance="e"}'
        values: '0+600x100'
      - series: 'watershed_edge_requests_total{code="503",instance="e"}'
        values: '0+60x100'
      - series: 'watershed_dlq_oldest_age_seconds{instance="a"}'
        values: '2000000+60x100'
    promql_expr_test:
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 3m
        exp_samples: []
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 90m
        exp_samples:
          - labels: 'ALERTS{alertname="WatershedEdge5xxRatioHigh",alertstate="firing",severity="critical"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedDeadLettersExpiringUnreviewed",alertstate="firing",instance="a",severity="info"}'
            value: 1
  # View API: a client with a stale key fails every 10 s (30 in 5 minutes:
  # quiet); from 20m someone tries 2 keys a second (the limit lets the
  # burst and then 1 a second through as 401s). One replica's key file does
  # not load from 10m.
  - interval: 1m
    input_series:
      - series: 'watershed_view_auth_failures_total{instance="v1"}'
        values: '0+6x20 126+60x20'
      - series: 'watershed_view_keys_stale{instance="v1"}'
        values: '0x9 1x30'
      - series: 'watershed_view_keys_stale{instance="v2"}'
        values: '0x40'
    promql_expr_test:
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 12m
        exp_samples: []
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 19m
        exp_samples:
          - labels: 'ALERTS{alertname="WatershedViewKeysStale",alertstate="firing",instance="v1",severity="critical"}'
            value: 1
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 25m
        exp_samples:
          - labels: 'ALERTS{alertname="WatershedViewAuthFailuresBurst",alertstate="firing",severity="warning"}'
            value: 1
          - labels: 'ALERTS{alertname="WatershedViewKeysStale",alertstate="firing",instance="v1",severity="critical"}'
            value: 1
`

func TestAlertRulesFireAsDocumented(t *testing.T) {
	rules, err := filepath.Abs(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := filepath.Join(dir, "alerts_test.yml")
	body := []byte(strings.ReplaceAll(alertRulesTests, "RULES", rules))
	if err := os.WriteFile(tests, body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool(t), "test", "rules", tests).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
