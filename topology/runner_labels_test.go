package topology_test

import (
	"bytes"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/topology"
)

// A group's goroutines carry its name as the profile label "group", so
// that a CPU profile of a process running several groups splits by group.
func TestRunnerLabelsGroupGoroutines(t *testing.T) {
	run := runTopo(t, newCounter(2).t, topology.Kafka{Brokers: startBroker(t)}, nil, nil)
	defer run.stop(t)
	groups := run.r.Groups()
	if len(groups) == 0 {
		t.Fatal("no groups")
	}
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if want := `"group":"` + g + `"`; !strings.Contains(b.String(), want) {
			t.Errorf("no goroutine labelled %s", want)
		}
	}
}
