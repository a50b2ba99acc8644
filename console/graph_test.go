package console

import (
	"testing"

	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

// Every node of the pipeline (also fused) is placed once, inside the
// graph, without overlapping another; sources are left of what they feed,
// and the dead-letter topic is alone in the last column.
func TestLayout(t *testing.T) {
	for _, fuse := range []processors.Fusion{processors.FuseNone, processors.FuseAll} {
		d := processors.New(processors.Config{Fuse: fuse}).Topology.Describe()
		g := Layout(d)
		if want := len(d.Topics) + len(d.Groups) + len(d.Externals()); len(g.Nodes) != want {
			t.Fatalf("%d nodes, want %d", len(g.Nodes), want)
		}
		at := map[string]Node{}
		for _, n := range g.Nodes {
			if _, dup := at[n.ID]; dup {
				t.Errorf("node %s twice", n.ID)
			}
			at[n.ID] = n
			if n.X < 0 || n.Y < 0 || n.X+n.W > g.Width || n.Y+n.H > g.Height || n.W == 0 || n.H == 0 {
				t.Errorf("node %+v outside the %dx%d graph", n, g.Width, g.Height)
			}
			for _, m := range g.Nodes {
				if m.ID != n.ID && n.X < m.X+m.W && m.X < n.X+n.W && n.Y < m.Y+m.H && m.Y < n.Y+n.H {
					t.Errorf("%s overlaps %s", n.ID, m.ID)
				}
			}
		}
		dead := at[topology.NodeID(topology.NodeTopic, d.DeadLetterTopic)]
		for _, n := range g.Nodes {
			if n.ID != dead.ID && n.X >= dead.X {
				t.Errorf("%s is not left of the dead-letter topic", n.ID)
			}
		}
		raw, decode := at["t_telemetry_raw"], at[topology.NodeID(topology.NodeGroup, d.Groups[0].Group)]
		if at["x_ingest_edge"].X >= raw.X || raw.X >= decode.X {
			t.Errorf("edge %d, raw %d, first group %d: not left to right", at["x_ingest_edge"].X, raw.X, decode.X)
		}
		for _, e := range g.Edges {
			if _, ok := at[e.From]; !ok {
				t.Errorf("edge from unknown node %s", e.From)
			}
			if _, ok := at[e.To]; !ok {
				t.Errorf("edge to unknown node %s", e.To)
			}
		}
	}
}
