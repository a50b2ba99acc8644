package topology

// Edge is one edge of the description's graph: From and To are node ids
// (NodeID), Label says what the edge carries, Dashed marks dead letters,
// joins and lookups.
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Label  string `json:"label"`
	Dashed bool   `json:"dashed,omitempty"`
}

// Node kinds of NodeID.
const (
	NodeTopic    = "t_"
	NodeGroup    = "g_"
	NodeExternal = "x_"
)

// NodeID returns the id of a node of kind NodeTopic, NodeGroup or
// NodeExternal named name, as Edges, Mermaid and DOT name it.
func NodeID(kind, name string) string { return ident(kind, name) }

// Edges returns every edge of the graph that `watershed topology --format
// mermaid` draws, in the same order.
func (d Description) Edges() []Edge {
	es := d.edges()
	out := make([]Edge, len(es))
	for i, e := range es {
		out[i] = Edge{From: e.from, To: e.to, Label: e.label, Dashed: e.dashed}
	}
	return out
}

// Externals returns the parties outside the topology that produce its
// topics (such as the ingest edge), sorted.
func (d Description) Externals() []string { return d.externals() }
