package topology

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Description is the whole application as declared: every topic and every
// processor group with its edges. It is what `watershed topology` prints.
type Description struct {
	Name            string             `json:"name"`
	DeadLetterTopic string             `json:"dead_letter_topic"`
	Topics          []TopicDescription `json:"topics"`
	Groups          []GroupDescription `json:"groups"`
}

// TopicDescription describes one topic.
type TopicDescription struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	ValueType  string `json:"value_type"`
	Codec      string `json:"codec"`
	Key        string `json:"key"`
	Partitions int32  `json:"partitions"`
	Cleanup    string `json:"cleanup"`
	ProducedBy string `json:"produced_by,omitempty"`
	// External is set when ProducedBy is outside the topology.
	External bool `json:"external,omitempty"`
	// Partitioner names the topic's partitioner when it is not the
	// default (goka's hash): "murmur2", or PartitionerOrigin.
	Partitioner string `json:"partitioner,omitempty"`
}

// GroupDescription describes one processor group.
type GroupDescription struct {
	Group       string   `json:"group"`
	Description string   `json:"description,omitempty"`
	Inputs      []string `json:"inputs"`
	Outputs     []string `json:"outputs"`
	Table       string   `json:"table,omitempty"`
	Loop        string   `json:"loop,omitempty"`
	Lookups     []string `json:"lookups,omitempty"`
	Joins       []string `json:"joins,omitempty"`
	OnFailure   string   `json:"on_failure"`
}

// Describe returns the topology's description. It builds the topology
// (see Build), and describes it even when it does not validate.
func (t *Topology) Describe() Description {
	_, _ = t.Build()
	return t.describe()
}

func (t *Topology) describe() Description {
	d := Description{Name: t.name, DeadLetterTopic: t.deadLetter}
	producers := map[string][]string{}
	for _, p := range t.procs {
		for _, o := range p.outputs {
			producers[o.name] = append(producers[o.name], p.group)
		}
	}
	for _, name := range t.Topics() {
		td := t.topics[name]
		cleanup := "delete"
		if td.kind == kindTable || td.kind == kindState {
			cleanup = "compact"
		}
		producer := td.external
		if producer == "" {
			producer = strings.Join(producers[td.name], ", ")
		}
		if td.owner != "" {
			producer = td.owner
		}
		if td.deadLetter {
			producer = "every group"
		}
		desc := TopicDescription{
			Name: td.name, Kind: td.kind.String(), ValueType: td.valueType, Codec: td.codecName,
			Key: td.key, Partitions: td.partitions, Cleanup: cleanup, ProducedBy: producer, External: td.external != "",
		}
		if td.partitioner != GokaHash {
			desc.Partitioner = td.partitioner.String()
		}
		if td.kind == kindState || td.kind == kindTicks {
			// Written to the partition of the input record they come
			// from (its origin header), whatever their key hashes to.
			desc.Partitioner = PartitionerOrigin
		}
		d.Topics = append(d.Topics, desc)
	}
	for _, p := range t.procs {
		g := GroupDescription{Group: p.group, Description: p.description, Inputs: []string{}, Outputs: []string{}}
		for _, in := range p.inputs {
			g.Inputs = append(g.Inputs, in.topic.name)
		}
		for _, o := range p.outputs {
			g.Outputs = append(g.Outputs, o.name)
		}
		g.Inputs, g.Outputs = p.time.describe(g.Inputs, g.Outputs)
		g.Outputs = append(g.Outputs, t.deadLetter)
		if p.table != nil {
			g.Table = p.table.name
		}
		if p.loop != nil {
			g.Loop = p.loop.topic.name
		}
		for _, l := range p.lookups {
			g.Lookups = append(g.Lookups, l.name)
		}
		for _, j := range p.joins {
			g.Joins = append(g.Joins, j.name)
		}
		g.OnFailure = "dead-letter"
		if p.policy == Stop {
			g.OnFailure = "stop"
		}
		d.Groups = append(d.Groups, g)
	}
	return d
}

// Format names an output format of Write.
type Format string

// The formats of Write.
const (
	FormatText    Format = "text"
	FormatMermaid Format = "mermaid"
	FormatDOT     Format = "dot"
	FormatJSON    Format = "json"
)

// Write prints the description in format f.
func (d Description) Write(w io.Writer, f Format) error {
	var err error
	switch f {
	case FormatText, "":
		err = d.writeText(w)
	case FormatMermaid:
		err = d.writeMermaid(w)
	case FormatDOT:
		err = d.writeDOT(w)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(d)
	default:
		return fmt.Errorf("topology: unknown format %q (text, mermaid, dot, json)", f)
	}
	if err != nil {
		return fmt.Errorf("topology: write description: %w", err)
	}
	return nil
}

func (d Description) topic(name string) TopicDescription {
	for _, t := range d.Topics {
		if t.Name == name {
			return t
		}
	}
	return TopicDescription{Name: name}
}

func (d Description) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "topology %s\n\n", d.Name)
	fmt.Fprintf(&b, "topics:\n")
	for _, t := range d.Topics {
		by := t.ProducedBy
		if by == "" {
			by = "processors"
		}
		key := t.Key
		if t.Partitioner != "" {
			key += " by " + t.Partitioner
		}
		fmt.Fprintf(&b, "  %-34s %-6s %2d partitions  key=%-10s %s via %s, %s (produced by %s)\n",
			t.Name, t.Kind, t.Partitions, key, t.ValueType, t.Codec, t.Cleanup, by)
	}
	for _, g := range d.Groups {
		fmt.Fprintf(&b, "\ngroup %s", g.Group)
		if g.Description != "" {
			fmt.Fprintf(&b, ": %s", g.Description)
		}
		fmt.Fprintf(&b, "\n")
		for _, in := range g.Inputs {
			fmt.Fprintf(&b, "  <- %s (%s)\n", in, d.topic(in).ValueType)
		}
		if g.Loop != "" {
			fmt.Fprintf(&b, "  <- %s (loop, %s)\n", g.Loop, d.topic(g.Loop).ValueType)
		}
		for _, j := range g.Joins {
			fmt.Fprintf(&b, "  join %s (%s)\n", j, d.topic(j).ValueType)
		}
		for _, l := range g.Lookups {
			fmt.Fprintf(&b, "  lookup %s (%s)\n", l, d.topic(l).ValueType)
		}
		if g.Table != "" {
			fmt.Fprintf(&b, "  table %s (%s)\n", g.Table, d.topic(g.Table).ValueType)
		}
		for _, o := range g.Outputs {
			fmt.Fprintf(&b, "  -> %s (%s)\n", o, d.topic(o).ValueType)
		}
		fmt.Fprintf(&b, "  on failure: %s\n", g.OnFailure)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ident turns a topic or group name into a Mermaid/DOT-safe identifier.
func ident(prefix, name string) string {
	r := strings.NewReplacer(".", "_", "-", "_", " ", "_")
	return prefix + r.Replace(name)
}

func (d Description) writeMermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, t := range d.Topics {
		shape := "[/%s/]"
		if t.Kind == "table" {
			shape = "[(%s)]"
		}
		fmt.Fprintf(&b, "  %s"+shape+"\n", ident("t_", t.Name), t.Name)
	}
	for _, g := range d.Groups {
		fmt.Fprintf(&b, "  %s[[%s]]\n", ident("g_", g.Group), g.Group)
	}
	for _, x := range d.externals() {
		fmt.Fprintf(&b, "  %s([%s])\n", ident("x_", x), x)
	}
	for _, e := range d.edges() {
		arrow := "-->"
		if e.dashed {
			arrow = "-.->"
		}
		fmt.Fprintf(&b, "  %s %s|%q| %s\n", e.from, arrow, e.label, e.to)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (d Description) writeDOT(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n", d.Name)
	for _, t := range d.Topics {
		shape := "parallelogram"
		if t.Kind == "table" {
			shape = "cylinder"
		}
		fmt.Fprintf(&b, "  %s [label=%q, shape=%s];\n", ident("t_", t.Name), t.Name, shape)
	}
	for _, g := range d.Groups {
		fmt.Fprintf(&b, "  %s [label=%q, shape=box, style=bold];\n", ident("g_", g.Group), g.Group)
	}
	for _, x := range d.externals() {
		fmt.Fprintf(&b, "  %s [label=%q, shape=oval];\n", ident("x_", x), x)
	}
	for _, e := range d.edges() {
		style := ""
		if e.dashed {
			style = ", style=dashed"
		}
		fmt.Fprintf(&b, "  %s -> %s [label=%q%s];\n", e.from, e.to, e.label, style)
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type edge struct {
	from, to, label string
	dashed          bool
}

// edges lists every edge of the graph, each labelled with what it carries.
func (d Description) edges() []edge {
	var out []edge
	for _, g := range d.Groups {
		gid := ident("g_", g.Group)
		for _, in := range g.Inputs {
			out = append(out, edge{from: ident("t_", in), to: gid, label: d.topic(in).ValueType})
		}
		if g.Loop != "" {
			out = append(out, edge{from: gid, to: ident("t_", g.Loop), label: "loopback"})
			out = append(out, edge{from: ident("t_", g.Loop), to: gid, label: d.topic(g.Loop).ValueType})
		}
		if g.Table != "" {
			out = append(out, edge{from: gid, to: ident("t_", g.Table), label: "persist " + d.topic(g.Table).ValueType})
		}
		for _, j := range g.Joins {
			out = append(out, edge{from: ident("t_", j), to: gid, label: "join", dashed: true})
		}
		for _, l := range g.Lookups {
			out = append(out, edge{from: ident("t_", l), to: gid, label: "lookup", dashed: true})
		}
		for _, o := range g.Outputs {
			label := d.topic(o).ValueType
			dashed := o == d.DeadLetterTopic
			if dashed {
				label = "dead letters"
			}
			out = append(out, edge{from: gid, to: ident("t_", o), label: label, dashed: dashed})
		}
	}
	for _, t := range d.Topics {
		if t.Kind == "stream" && t.ProducedBy != "" && t.ProducedBy != "every group" && t.ProducedBy == externalOf(t) {
			out = append(out, edge{from: ident("x_", t.ProducedBy), to: ident("t_", t.Name), label: "external"})
		}
	}
	return out
}

// externals lists the parties outside the topology that produce topics.
func (d Description) externals() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range d.Topics {
		if t.Kind == "stream" && t.ProducedBy != "" && t.ProducedBy == externalOf(t) && !seen[t.ProducedBy] {
			seen[t.ProducedBy] = true
			out = append(out, t.ProducedBy)
		}
	}
	sort.Strings(out)
	return out
}

// externalOf returns who produces t outside the topology, or "".
func externalOf(t TopicDescription) string {
	if t.External {
		return t.ProducedBy
	}
	return ""
}

// PartitionerOrigin is the Partitioner of a topic whose records go to the
// partition of the input record they come from, not by their key: the
// state changelogs and ticks topics of groups with windows or timers.
const PartitionerOrigin = "origin"
