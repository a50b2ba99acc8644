package topology

import (
	"errors"
	"fmt"
	"strings"
)

// ValidationError lists every problem found in a topology.
type ValidationError struct {
	Problems []error
}

// Error lists the problems, one a line.
func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = "  - " + p.Error()
	}
	return fmt.Sprintf("topology: %d problem(s):\n%s", len(e.Problems), strings.Join(msgs, "\n"))
}

// Unwrap returns the single problems, for errors.Is and errors.As.
func (e *ValidationError) Unwrap() []error { return e.Problems }

// Validate checks the topology before anything runs: names are unique,
// every consumed topic has a producer (a processor, or an External
// declaration), co-partitioned inputs, joins and group tables agree on
// partition count and key, and every processor has an input. It returns a
// *ValidationError naming each processor and edge at fault. It builds the
// topology (see Build): declaring ends here.
func (t *Topology) Validate() error {
	_, err := t.Build()
	return err
}

// check runs the checks of Validate on the finalized declaration.
func (t *Topology) check() []error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	produced := map[string][]string{}
	for _, p := range t.procs {
		for _, o := range p.outputs {
			produced[o.name] = append(produced[o.name], p.group)
		}
	}
	groups := map[string]bool{}
	for _, p := range t.procs {
		groups[p.group] = true
	}

	for _, p := range t.procs {
		if p.group == "" {
			add("a processor has an empty group name")
		}
		if len(p.inputs) == 0 && p.loop == nil {
			add("processor %q consumes nothing", p.group)
		}
		seen := map[string]bool{}
		for _, in := range p.inputs {
			d := in.topic
			if seen[d.name] {
				add("processor %q consumes %q twice", p.group, d.name)
			}
			seen[d.name] = true
			if d.kind != kindStream {
				add("processor %q consumes %s %q as a stream: use Join or Lookup", p.group, d.kind, d.name)
			}
			if len(produced[d.name]) == 0 && d.external == "" && !d.deadLetter {
				add("processor %q consumes %q, which no processor produces and which is not declared External", p.group, d.name)
			}
		}
		for _, o := range p.outputs {
			if o.kind != kindStream {
				add("processor %q emits to %s %q", p.group, o.kind, o.name)
			}
			if o.external != "" {
				add("processor %q emits to %q, which is declared as produced externally by %s", p.group, o.name, o.external)
			}
		}
		for _, l := range append(append([]*topicDecl(nil), p.lookups...), p.joins...) {
			if l.kind != kindTable {
				add("processor %q reads %s %q as a table", p.group, l.kind, l.name)
			} else if !groups[l.owner] {
				add("processor %q reads table %q, whose group %q is not declared", p.group, l.name, l.owner)
			}
			if l.owner == p.group {
				add("processor %q looks up or joins its own table %q: use the table handle", p.group, l.name)
			}
		}
		problems = append(problems, t.checkCopartitioning(p)...)
		problems = append(problems, p.time.check()...)
	}
	for _, name := range t.topicOrder {
		d := t.topics[name]
		if d.partitions < 1 {
			add("topic %q has %d partitions", d.name, d.partitions)
		}
		if strings.ContainsAny(d.name, " /\\,") || d.name == "" || len(d.name) > 249 {
			add("topic %q is not a valid Kafka topic name", d.name)
		}
	}
	return problems
}

// checkCopartitioning checks that everything p reads by the current key
// is partitioned alike, since goka assigns a partition of each of them to
// the same processor instance. It also sets the loop topic's partitions.
func (t *Topology) checkCopartitioning(p *Processor) []error {
	var copart []*topicDecl
	for _, in := range p.inputs {
		copart = append(copart, in.topic)
	}
	copart = append(copart, p.joins...)
	if p.table != nil {
		copart = append(copart, p.table)
	}
	if len(copart) == 0 {
		return checkPartitioners(p, nil)
	}
	var problems []error
	ref := copart[0]
	for _, d := range copart[1:] {
		if d.partitions != ref.partitions {
			problems = append(problems, fmt.Errorf("processor %q: %s %q has %d partitions but %s %q has %d; co-partitioned topics need equal counts",
				p.group, d.kind, d.name, d.partitions, ref.kind, ref.name, ref.partitions))
		}
		if d.key != ref.key {
			problems = append(problems, fmt.Errorf("processor %q: %s %q is keyed by %s but %s %q by %s; co-partitioned topics need the same key",
				p.group, d.kind, d.name, d.key, ref.kind, ref.name, ref.key))
		}
	}
	if p.loop != nil {
		p.loop.topic.partitions = ref.partitions
	}
	p.time.copartition(ref.partitions)
	return append(problems, checkPartitioners(p, copart)...)
}

// ErrUnknownGroup is returned when a run names a group the topology lacks.
var ErrUnknownGroup = errors.New("topology: unknown processor group")

// Select returns the processors of the named groups (all of them when
// names is empty), in declaration order.
func (t *Topology) Select(names []string) ([]*Processor, error) {
	if len(names) == 0 {
		return t.Processors(), nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []*Processor
	for _, p := range t.procs {
		if want[p.group] || want[strings.TrimPrefix(p.group, t.prefix)] {
			out = append(out, p)
			delete(want, p.group)
			delete(want, strings.TrimPrefix(p.group, t.prefix))
		}
	}
	for n := range want {
		return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownGroup, n, strings.Join(t.Groups(), ", "))
	}
	return out, nil
}
