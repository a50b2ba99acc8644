package processors_test

import (
	"testing"

	"github.com/watershed-io/watershed/topology"
)

// builtPlan returns the plan of tp, which a Runner runs, failing the test
// when tp does not build.
func builtPlan(tb testing.TB, tp *topology.Topology) *topology.Plan {
	tb.Helper()
	plan, err := tp.Build()
	if err != nil {
		tb.Fatal(err)
	}
	return plan
}
