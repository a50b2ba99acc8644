package console

import (
	"github.com/watershed-io/watershed/topology"
)

// Graph is the topology laid out left to right for drawing: each node at
// a place, edges between node ids.
type Graph struct {
	Width  int             `json:"width"`
	Height int             `json:"height"`
	Nodes  []Node          `json:"nodes"`
	Edges  []topology.Edge `json:"edges"`
}

// Node is a topic, table, group or external party at its place.
type Node struct {
	ID string `json:"id"`
	// Kind is "stream", "table", "group" or "external".
	Kind  string `json:"kind"`
	Label string `json:"label"`
	X     int    `json:"x"`
	Y     int    `json:"y"`
	W     int    `json:"w"`
	H     int    `json:"h"`
}

// Sizes of the layout, in SVG units.
const (
	nodeHeight  = 34
	groupHeight = 64
	rowGap      = 22
	colGap      = 44
	margin      = 20
	charWidth   = 7
)

// Layout places the description's nodes in columns: each node one column
// right of the nearest node that feeds it on a shortest path from the
// sources (the dead-letter edges, which every group has, do not count), the
// dead-letter topic in a column of its own at the right.
func Layout(d topology.Description) Graph {
	var nodes []Node
	index := map[string]int{}
	add := func(n Node) {
		index[n.ID] = len(nodes)
		nodes = append(nodes, n)
	}
	for _, x := range d.Externals() {
		add(Node{ID: topology.NodeID(topology.NodeExternal, x), Kind: "external", Label: x})
	}
	for _, t := range d.Topics {
		add(Node{ID: topology.NodeID(topology.NodeTopic, t.Name), Kind: t.Kind, Label: t.Name})
	}
	for _, g := range d.Groups {
		add(Node{ID: topology.NodeID(topology.NodeGroup, g.Group), Kind: "group", Label: g.Group})
	}
	dead := topology.NodeID(topology.NodeTopic, d.DeadLetterTopic)
	edges := d.Edges()
	succ := make([][]int, len(nodes))
	indeg := make([]int, len(nodes))
	for _, e := range edges {
		from, ok1 := index[e.From]
		to, ok2 := index[e.To]
		if !ok1 || !ok2 || e.Dashed || e.From == dead || e.To == dead {
			continue
		}
		succ[from] = append(succ[from], to)
		indeg[to]++
	}
	// Breadth-first from the sources (externals, topics nobody in the
	// topology writes): each node one column right of the nearest source
	// path, so that loops and retry cycles go back, not further right.
	rank := make([]int, len(nodes))
	seen := make([]bool, len(nodes))
	var queue []int
	for n := range nodes {
		if indeg[n] == 0 && nodes[n].ID != dead {
			seen[n] = true
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, m := range succ[n] {
			if !seen[m] {
				seen[m] = true
				rank[m] = rank[n] + 1
				queue = append(queue, m)
			}
		}
	}
	last := 0
	for n := range nodes {
		if nodes[n].ID != dead {
			last = max(last, rank[n])
		}
	}
	if i, ok := index[dead]; ok {
		rank[i] = last + 1
	}
	// Columns: widths from the longest label, nodes stacked in
	// declaration order.
	cols := make([][]int, last+2)
	for n := range nodes {
		cols[rank[n]] = append(cols[rank[n]], n)
	}
	g := Graph{Edges: edges}
	x := margin
	for _, col := range cols {
		if len(col) == 0 {
			continue
		}
		w := 0
		for _, n := range col {
			w = max(w, len(nodes[n].Label)*charWidth+24)
		}
		w = max(w, 146)
		y := margin
		for _, n := range col {
			h := nodeHeight
			if nodes[n].Kind == "group" {
				h = groupHeight
			}
			nodes[n].X, nodes[n].Y, nodes[n].W, nodes[n].H = x, y, w, h
			y += h + rowGap
		}
		g.Height = max(g.Height, y+margin)
		x += w + colGap
	}
	g.Width = x - colGap + margin
	g.Nodes = nodes
	return g
}
