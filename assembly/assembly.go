// Package assembly is the one place where a binary's topology is put
// together: the telemetry pipeline of package processors and every
// processor group added to it, with their settings. Every command of
// cmd/watershed (run, demo, bench, topology, view, dlq, tail) and the
// deployment checks declare through a Registry, so a group listed in it is
// seen, run and configured by all of them alike.
//
// A processor package offers a Group: its name, its settings and a Declare
// function. Declare reaches the pipeline's streams by name, with their
// value types checked (Stream), and declares its own topics through
// NewStream and Persist so that other groups and `watershed tail` find them
// too. The binary lists its groups in one call to New; nothing registers
// itself at init time, so a test builds a registry of its own.
package assembly

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology"
)

// Group is a processor package's registration: listing it in a Registry
// adds the group to every command.
type Group struct {
	// Name is the processor group's name before the prefix: what `watershed
	// run --groups` takes, and its settings' [section] in a config file.
	Name string
	// Settings are the group's settings; every command that declares the
	// assembly offers them as flags, environment variables and config keys.
	Settings []settings.Setting
	// Declare declares the group, named Name, and its topics.
	Declare func(d *Declaration) error
}

// Registry is what a binary runs: the telemetry pipeline and the groups
// added to it, in order. It is immutable.
type Registry struct {
	groups []Group
}

// New returns the registry of the pipeline and groups, declared in this
// order (a group may consume the streams of those before it).
func New(groups ...Group) *Registry {
	return &Registry{groups: slices.Clone(groups)}
}

// Groups returns the added groups in order.
func (r *Registry) Groups() []Group { return slices.Clone(r.groups) }

// With returns a registry with groups added after r's.
func (r *Registry) With(groups ...Group) *Registry {
	return New(append(r.Groups(), groups...)...)
}

// Sections returns every declared setting: the pipeline's section first,
// then one per group that has settings.
func (r *Registry) Sections() []settings.Section {
	out := []settings.Section{processors.Settings()}
	for _, g := range r.groups {
		if len(g.Settings) > 0 {
			out = append(out, settings.Section{Name: g.Name, Settings: g.Settings})
		}
	}
	return out
}

// Check reports groups without a name or a Declare, names given twice or
// taken by the pipeline, and settings declared twice.
func (r *Registry) Check() error {
	var errs []error
	taken := processors.New(processors.Config{}).Topology.Groups()
	for _, g := range r.groups {
		switch {
		case g.Name == "":
			errs = append(errs, errors.New("assembly: a group has no name"))
		case g.Declare == nil:
			errs = append(errs, fmt.Errorf("assembly: group %q has no Declare", g.Name))
		case slices.Contains(taken, g.Name) || g.Name == processors.SettingsSection:
			errs = append(errs, fmt.Errorf("assembly: group name %q is taken", g.Name))
		}
		taken = append(taken, g.Name)
	}
	if err := settings.Check(r.Sections()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Build declares the pipeline of cfg and then every group, with the
// settings in v, and builds the whole topology (Assembly.Plan).
func (r *Registry) Build(cfg processors.Config, v settings.Values) (*Assembly, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	p := processors.New(cfg)
	a := &Assembly{Pipeline: p, topics: map[string]topic{}}
	publishStream(a, p.Raw, false)
	if p.Decoded.Codec() != nil { // absent when decode is fused into dedupe
		publishStream(a, p.Decoded, false)
	}
	publishStream(a, p.Normalized, false)
	publishStream(a, p.Alerts, false)
	publishStream(a, p.DeadLetters, false)
	publishTable(a, p.DeviceState, false)
	publishTable(a, p.Dedupe, false)
	prefix := p.Config().Prefix
	for _, g := range r.groups {
		d := &Declaration{a: a, group: g, Settings: v}
		if err := g.Declare(d); err != nil {
			return nil, fmt.Errorf("assembly: group %s: %w", g.Name, err)
		}
		if !slices.Contains(p.Topology.Groups(), prefix+g.Name) {
			return nil, fmt.Errorf("assembly: group %s: Declare declared no processor group named %q (use Declaration.Processor)", g.Name, g.Name)
		}
		a.added = append(a.added, prefix+g.Name)
	}
	plan, err := p.Topology.Build()
	if err != nil {
		return nil, err
	}
	a.Plan = plan
	return a, nil
}

// Assembly is a built registry: the declared pipeline, whose Topology
// also holds the added groups, and every topic's codec by name.
type Assembly struct {
	*processors.Pipeline
	// Plan is the built topology, which a Runner runs.
	Plan   *topology.Plan
	topics map[string]topic
	added  []string
}

// topic is a declared topic with its typed handle and its codec.
type topic struct {
	handle    any // topology.Stream[V] or topology.Table[V]
	valueType reflect.Type
	table     bool
	added     bool // declared by an added group
	decode    func([]byte) (any, error)
}

func publishStream[V any](a *Assembly, s topology.Stream[V], added bool) {
	c := s.Codec()
	a.topics[s.Name()] = topic{handle: s, valueType: reflect.TypeFor[V](), added: added,
		decode: func(b []byte) (any, error) { return c.Decode(b) }}
}

func publishTable[V any](a *Assembly, tb topology.Table[V], added bool) {
	c := tb.Codec()
	a.topics[tb.Name()] = topic{handle: tb, valueType: reflect.TypeFor[V](), table: true, added: added,
		decode: func(b []byte) (any, error) { return c.Decode(b) }}
}

// AddedGroups returns the full names of the groups added to the pipeline.
func (a *Assembly) AddedGroups() []string { return slices.Clone(a.added) }

// Topic is a declared topic's codec, for tools that read any topic.
type Topic struct {
	// Name is the full topic name.
	Name string
	// Type is the Go type of its values.
	Type string
	// Table says it is a group table.
	Table bool
	// Decode decodes a record's value with the topic's declared codec.
	Decode func([]byte) (any, error)
}

// Topic returns the declared topic name, given in full or before the
// prefix. A topic of the topology whose codec is the framework's own (a
// loop or retry topic) is reported with a nil Decode.
func (a *Assembly) Topic(name string) (Topic, error) {
	for _, n := range []string{name, a.Config().Prefix + name} {
		if t, ok := a.topics[n]; ok {
			return Topic{Name: n, Type: t.valueType.String(), Table: t.table, Decode: t.decode}, nil
		}
		if slices.Contains(a.Topology.Topics(), n) {
			return Topic{Name: n}, nil
		}
	}
	return Topic{}, fmt.Errorf("no topic %q in the assembly (topics: %s)", name, strings.Join(a.Topology.Topics(), ", "))
}

// Outputs returns the full names of the streams the added groups
// declared, sorted: what a demo points its user to.
func (a *Assembly) Outputs() []string {
	var out []string
	for n, t := range a.topics {
		if t.added && !t.table {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Declaration is what a group's Declare works with.
type Declaration struct {
	a     *Assembly
	group Group
	// Settings are the command's resolved settings: read the group's with
	// their Var's Get.
	Settings settings.Values
}

// Topology returns the topology being declared.
func (d *Declaration) Topology() *topology.Topology { return d.a.Topology }

// Config returns the pipeline's configuration, defaults applied.
func (d *Declaration) Config() processors.Config { return d.a.Config() }

// Processor declares the group's processor, named after the group.
func (d *Declaration) Processor(opts ...topology.ProcessorOption) *topology.Processor {
	return d.a.Topology.Processor(d.group.Name, opts...)
}

// TopicOptions are the options of a topic co-partitioned with the
// pipeline's: its partition count, keyed by device id.
func (d *Declaration) TopicOptions() []topology.TopicOption {
	return []topology.TopicOption{topology.WithPartitions(d.Config().Partitions), topology.KeyedBy(processors.KeyDeviceID)}
}

// Stream returns the declared stream called name (before the prefix, as
// the pipeline's Topic constants are), checking that its values are of
// type V.
func Stream[V any](d *Declaration, name string) (topology.Stream[V], error) {
	return StreamOf[V](d.a, name)
}

// StreamOf is Stream on a built assembly.
func StreamOf[V any](a *Assembly, name string) (topology.Stream[V], error) {
	h, err := lookup[V](a, name, false)
	if err != nil {
		return topology.Stream[V]{}, err
	}
	return h.(topology.Stream[V]), nil
}

// TableOf returns the group table called name (before the prefix, such as
// "speeding-table") of a built assembly, checking that its values are of
// type V.
func TableOf[V any](a *Assembly, name string) (topology.Table[V], error) {
	h, err := lookup[V](a, name, true)
	if err != nil {
		return topology.Table[V]{}, err
	}
	return h.(topology.Table[V]), nil
}

func lookup[V any](a *Assembly, name string, table bool) (any, error) {
	kind := "stream"
	if table {
		kind = "table"
	}
	t, ok := a.topics[a.Config().Prefix+name]
	if !ok || t.table != table {
		return nil, fmt.Errorf("%s %q is not declared (%ss: %s)", kind, name, kind, strings.Join(a.names(table), ", "))
	}
	if want := reflect.TypeFor[V](); t.valueType != want {
		return nil, fmt.Errorf("%s %q carries %s, not %s", kind, name, t.valueType, want)
	}
	return t.handle, nil
}

// names lists the declared streams (or tables) with their value types.
func (a *Assembly) names(tables bool) []string {
	var out []string
	for n, t := range a.topics {
		if t.table == tables {
			out = append(out, fmt.Sprintf("%s (%s)", strings.TrimPrefix(n, a.Config().Prefix), t.valueType))
		}
	}
	sort.Strings(out)
	return out
}

// NewStream declares a stream of the group (named before the prefix),
// co-partitioned with the pipeline unless opts say otherwise, and
// publishes it for later groups and for `watershed tail`.
func NewStream[V any](d *Declaration, name string, codec codecs.Codec[V], opts ...topology.TopicOption) topology.Stream[V] {
	s := topology.NewStream(d.a.Topology, name, codec, append(d.TopicOptions(), opts...)...)
	publishStream(d.a, s, true)
	return s
}

// Persist declares the group table of g, co-partitioned with the
// pipeline, and publishes it for `watershed tail`.
func Persist[V any](d *Declaration, g *topology.Processor, codec codecs.Codec[V]) topology.Table[V] {
	tb := topology.Persist(g, codec, d.TopicOptions()...)
	publishTable(d.a, tb, true)
	return tb
}
