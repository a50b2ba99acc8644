package processors_test

import (
	"os"
	"testing"

	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

func TestPipelineValidates(t *testing.T) {
	p := processors.New(processors.Config{})
	if err := p.Topology.Validate(); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SHOW") != "" {
		_ = p.Topology.Describe().Write(os.Stdout, topology.FormatText)
		_ = p.Topology.Describe().Write(os.Stdout, topology.FormatMermaid)
	}
}
