package topology_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/topology"
)

func TestDescribeListsEveryEdge(t *testing.T) {
	c := newCounter(4)
	d := c.t.Describe()

	topics := map[string]topology.TopicDescription{}
	for _, td := range d.Topics {
		topics[td.Name] = td
	}
	for name, kind := range map[string]string{"numbers": "stream", "sums": "stream", "count-table": "table", "test.dlq": "stream"} {
		if topics[name].Kind != kind {
			t.Errorf("topic %s: %+v, want kind %s", name, topics[name], kind)
		}
	}
	if topics["count-table"].Cleanup != "compact" || topics["count-table"].ValueType != "int" || topics["numbers"].ProducedBy != "test producer" || topics["sums"].ProducedBy != "count" {
		t.Errorf("topic details wrong: %+v", topics)
	}
	if len(d.Groups) != 1 {
		t.Fatalf("groups = %+v", d.Groups)
	}
	g := d.Groups[0]
	if g.Group != "count" || g.Table != "count-table" || strings.Join(g.Inputs, ",") != "numbers" || strings.Join(g.Outputs, ",") != "sums,test.dlq" {
		t.Errorf("group = %+v", g)
	}

	for _, f := range []topology.Format{topology.FormatText, topology.FormatMermaid, topology.FormatDOT, topology.FormatJSON} {
		var b bytes.Buffer
		if err := d.Write(&b, f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out := b.String()
		for _, want := range []string{"numbers", "sums", "count-table", "test.dlq", "count"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q:\n%s", f, want, out)
			}
		}
	}
	var b bytes.Buffer
	if err := d.Write(&b, topology.FormatMermaid); err != nil {
		t.Fatal(err)
	}
	for _, edge := range []string{`t_numbers -->|"string"| g_count`, `g_count -->|"persist int"| t_count_table`, `g_count -->|"string"| t_sums`, `g_count -.->|"dead letters"| t_test_dlq`, `x_test_producer -->|"external"| t_numbers`} {
		if !strings.Contains(b.String(), edge) {
			t.Errorf("mermaid lacks edge %q:\n%s", edge, b.String())
		}
	}
	b.Reset()
	if err := d.Write(&b, topology.FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back topology.Description
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Name != "test" || len(back.Topics) != len(d.Topics) {
		t.Errorf("json round trip: %v %+v", err, back)
	}
	if err := d.Write(&b, "yaml"); err == nil {
		t.Error("unknown format accepted")
	}
}

// The state changelogs and ticks topics are placed by the origin
// partition, not by their keys' hash, and Describe says so.
func TestDescribeStateTopicsPlacedByOrigin(t *testing.T) {
	topo, _, _, h := stateTopo()
	var seen int
	for _, td := range topo.Describe().Topics {
		switch td.Name {
		case h.Name(), "g-timers", "g-ticks":
			seen++
			if td.Partitioner != topology.PartitionerOrigin {
				t.Errorf("%s: partitioner %q, want %q", td.Name, td.Partitioner, topology.PartitionerOrigin)
			}
		case "in", "out":
			if td.Partitioner != "" {
				t.Errorf("%s: partitioner %q", td.Name, td.Partitioner)
			}
		}
	}
	if seen != 3 {
		t.Errorf("%d of the 3 state topics described", seen)
	}
}
