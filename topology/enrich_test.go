package topology_test

import (
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// Enrich without a function is a declaration error, not a nil call at
// the first record. (Its joins are tested by examples/timewindows.)
func TestEnrichWithoutFunctionIsRefused(t *testing.T) {
	topo := topology.New("enrich")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.External("test"))
	rows := topology.NewStream(topo, "rows", codecs.String{}, topology.External("test"))
	owner := topo.Processor("rows")
	table := topology.Persist(owner, codecs.String{})
	topology.Consume(owner, rows, func(c *topology.Context, _, v string) error { return table.Set(c, v) })
	topology.Enrich[string, string, string](topo.Processor("join"), in, table, "out", codecs.String{}, nil)
	if _, err := topo.Build(); err == nil || !strings.Contains(err.Error(), "Enrich without a function") {
		t.Fatalf("Build: %v, want the missing function refused", err)
	}
}
