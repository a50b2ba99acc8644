package assembly_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology"
)

// consumer is a group that consumes the stream name as values of V and
// declares an output stream of its own.
func consumer[V any](group, name string) assembly.Group {
	return assembly.Group{Name: group, Declare: func(d *assembly.Declaration) error {
		in, err := assembly.Stream[V](d, name)
		if err != nil {
			return err
		}
		out := assembly.NewStream(d, "telemetry."+group, codecs.JSON[V]{})
		g := d.Processor()
		emit := topology.Produce(g, out)
		topology.Consume(g, in, func(c *topology.Context, key string, v V) error { return emit.Emit(c, key, v) })
		return nil
	}}
}

func build(groups ...assembly.Group) (*assembly.Assembly, error) {
	return assembly.New(groups...).Build(processors.Config{Prefix: "x."}, settings.Values{})
}

// A group reaches the pipeline's streams, and an earlier group's, by name
// with their value types checked.
func TestStreamsByNameAndType(t *testing.T) {
	a, err := build(consumer[records.Alert]("copy", processors.TopicAlerts), consumer[records.Alert]("copy2", "telemetry.copy"))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.AddedGroups(); len(got) != 2 || got[0] != "x.copy" || got[1] != "x.copy2" {
		t.Errorf("added groups = %v", got)
	}
	if got := a.Outputs(); len(got) != 2 || got[0] != "x.telemetry.copy" {
		t.Errorf("outputs = %v", got)
	}
	s, err := assembly.StreamOf[records.Alert](a, "telemetry.copy2")
	if err != nil || s.Name() != "x.telemetry.copy2" {
		t.Errorf("StreamOf = %v, %v", s.Name(), err)
	}
	topic, err := a.Topic("telemetry.copy")
	if err != nil || topic.Decode == nil || topic.Type != "records.Alert" || topic.Name != "x.telemetry.copy" {
		t.Errorf("Topic = %+v, %v", topic, err)
	}
	if loop, err := a.Topic("x.dedupe-loop"); err != nil || loop.Decode != nil {
		t.Errorf("the loop topic = %+v, %v; want it known without a codec", loop, err)
	}

	_, err = build(consumer[records.Alert]("copy", "telemetry.alert"))
	if err == nil || !strings.Contains(err.Error(), `group copy: stream "telemetry.alert" is not declared`) || !strings.Contains(err.Error(), "telemetry.alerts (records.Alert)") {
		t.Errorf("a wrong name: %v", err)
	}
	_, err = build(consumer[records.Readings]("copy", processors.TopicAlerts))
	if err == nil || !strings.Contains(err.Error(), `stream "telemetry.alerts" carries records.Alert, not records.Readings`) {
		t.Errorf("a wrong type: %v", err)
	}
	_, err = build(consumer[records.Alert]("copy", "telemetry.later"), consumer[records.Alert]("later", processors.TopicAlerts))
	if err == nil || !strings.Contains(err.Error(), `"telemetry.later" is not declared`) {
		t.Errorf("a stream declared by a later group: %v", err)
	}
	if _, err := assembly.TableOf[records.DeviceState](a, "device-state-table"); err != nil {
		t.Error(err)
	}
	if _, err := assembly.TableOf[int](a, "device-state-table"); err == nil {
		t.Error("TableOf accepts a wrong type")
	}
}

// Mistakes in a registry are errors, not a partial topology.
func TestRegistryMistakes(t *testing.T) {
	noop := func(d *assembly.Declaration) error { return nil }
	for name, groups := range map[string][]assembly.Group{
		`group name "dedupe" is taken`:          {{Name: "dedupe", Declare: noop}},
		`group name "pipeline" is taken`:        {{Name: "pipeline", Declare: noop}},
		`group "a" has no Declare`:              {{Name: "a"}},
		"a group has no name":                   {{Declare: noop}},
		`declared no processor group named "a"`: {{Name: "a", Declare: noop}},
		`"dedupe-window" is declared by [pipeline] and by [a]`: {{Name: "a", Declare: noop,
			Settings: []settings.Setting{settings.Int("dedupe-window", 1, "")}}},
		"boom": {{Name: "a", Declare: func(*assembly.Declaration) error { return errors.New("boom") }}},
	} {
		if _, err := build(groups...); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("want %q, got %v", name, err)
		}
	}
}
