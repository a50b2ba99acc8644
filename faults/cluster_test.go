package faults

import (
	"strings"
	"testing"

	"github.com/watershed-io/watershed/processors"
)

// The cluster runs every group of the pipeline by default: a group left
// out would neither drain nor meet a fault.
func TestClusterRunsEveryGroup(t *testing.T) {
	p := processors.New(processors.Config{Prefix: "x.", Partitions: 4})
	c, err := NewCluster(Config{Bin: "watershed", Dir: t.TempDir(), Prefix: "x.", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	groups := p.Topology.Groups()
	if len(groups) == 0 {
		t.Fatal("the pipeline declares no group")
	}
	for _, g := range groups {
		if !c.RunsGroup(strings.TrimPrefix(g, "x.")) {
			t.Errorf("the cluster does not run the pipeline's group %s", g)
		}
	}
}
