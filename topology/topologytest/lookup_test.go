package topologytest_test

import (
	"fmt"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// A group reads another group's table by the record's own key (join) and
// by any key (lookup).
func TestLookupAndJoin(t *testing.T) {
	tp := topology.New("lj")
	names := topology.NewStream(tp, "names", codecs.String{}, topology.External("test"))
	visits := topology.NewStream(tp, "visits", codecs.String{}, topology.External("test"))
	out := topology.NewStream(tp, "greetings", codecs.String{})

	owner := tp.Processor("names")
	table := topology.Persist(owner, codecs.String{})
	topology.Consume(owner, names, func(c *topology.Context, key, v string) error { return table.Set(c, v) })

	greeter := tp.Processor("greeter")
	byKey := topology.Join(greeter, table)
	anyKey := topology.Lookup(greeter, table)
	emit := topology.Produce(greeter, out)
	topology.Consume(greeter, visits, func(c *topology.Context, key, friend string) error {
		me, ok, err := byKey.Get(c)
		if err != nil {
			return err
		}
		if !ok {
			me = "stranger"
		}
		them, _, err := anyKey.Get(c, friend)
		if err != nil {
			return err
		}
		return emit.Emit(c, key, fmt.Sprintf("%s visits %s", me, them))
	})
	// The owner's own table handle refuses a foreign group.
	topology.Consume(tp.Processor("intruder"), visits, func(c *topology.Context, key, v string) error {
		if _, _, err := table.Get(c); err == nil {
			return fmt.Errorf("read another group's table as its own")
		}
		return nil
	})

	d := topologytest.New(t, tp)
	topologytest.Send(d, names, "1", "ada")
	topologytest.Send(d, names, "2", "grace")
	topologytest.Send(d, visits, "1", "2")
	topologytest.Send(d, visits, "3", "1")
	got := topologytest.Read(d, out)
	if len(got) != 2 || got[0].Value != "ada visits grace" || got[1].Value != "stranger visits ada" {
		t.Fatalf("greetings = %+v", got)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}
