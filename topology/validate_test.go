package topology_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

func nop[V any](*topology.Context, string, V) error { return nil }

func TestValidateAcceptsCounter(t *testing.T) {
	if err := newCounter(4).t.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRefusesBrokenTopologies(t *testing.T) {
	cases := []struct {
		name  string
		build func() *topology.Topology
		want  []string // substrings of the error naming processor and edge
	}{
		{"consumed but never produced", func() *topology.Topology {
			tp := topology.New("x")
			s := topology.NewStream(tp, "orphan", codecs.String{})
			p := tp.Processor("reader")
			topology.Consume(p, s, nop[string])
			return tp
		}, []string{`"reader"`, `"orphan"`, "no processor produces"}},
		{"topic declared twice", func() *topology.Topology {
			tp := topology.New("x")
			s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"))
			topology.NewStream(tp, "a", codecs.JSON[int]{})
			p := tp.Processor("p")
			topology.Consume(p, s, nop[string])
			return tp
		}, []string{`topic "a" declared twice`, "int", "string"}},
		{"group declared twice", func() *topology.Topology {
			tp := topology.New("x")
			s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"))
			topology.Consume(tp.Processor("p"), s, nop[string])
			topology.Consume(tp.Processor("p"), s, nop[string])
			return tp
		}, []string{`group "p" declared twice`}},
		{"co-partition count differs", func() *topology.Topology {
			tp := topology.New("x")
			s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"), topology.WithPartitions(4))
			p := tp.Processor("p")
			topology.Persist(p, codecs.String{}, topology.WithPartitions(8))
			topology.Consume(p, s, nop[string])
			return tp
		}, []string{`processor "p"`, `"p-table" has 8 partitions`, `"a" has 4`}},
		{"co-partition key differs", func() *topology.Topology {
			tp := topology.New("x")
			s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"), topology.KeyedBy("fleet"))
			p := tp.Processor("p")
			topology.Persist(p, codecs.String{}, topology.KeyedBy("device_id"))
			topology.Consume(p, s, nop[string])
			return tp
		}, []string{`processor "p"`, "keyed by device_id", "by fleet"}},
		{"processor without input", func() *topology.Topology {
			tp := topology.New("x")
			tp.Processor("idle")
			return tp
		}, []string{`processor "idle" consumes nothing`}},
		{"emits to an external stream", func() *topology.Topology {
			tp := topology.New("x")
			s := topology.NewStream(tp, "a", codecs.String{}, topology.External("edge"))
			p := tp.Processor("p")
			topology.Consume(p, s, nop[string])
			topology.Produce(p, s)
			return tp
		}, []string{`processor "p" emits to "a"`, "externally by edge"}},
		{"looks up a table of an unknown group", func() *topology.Topology {
			other := topology.New("y")
			op := other.Processor("owner")
			tbl := topology.Persist(op, codecs.String{})
			tp := topology.New("x")
			s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"))
			p := tp.Processor("p")
			topology.Lookup(p, tbl)
			topology.Consume(p, s, nop[string])
			return tp
		}, []string{`processor "p" reads table "owner-table"`, "not declared"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.build().Validate()
			var ve *topology.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSelectGroups(t *testing.T) {
	tp := topology.New("x", topology.WithPrefix("acme."))
	s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"))
	topology.Consume(tp.Processor("one"), s, nop[string])
	topology.Consume(tp.Processor("two"), s, nop[string])
	got, err := tp.Select([]string{"two"})
	if err != nil || len(got) != 1 || got[0].Group() != "acme.two" {
		t.Fatalf("Select(two) = %v, %v", got, err)
	}
	if _, err := tp.Select([]string{"three"}); !errors.Is(err, topology.ErrUnknownGroup) {
		t.Fatalf("Select(three) = %v, want ErrUnknownGroup", err)
	}
	if s.Name() != "acme.a" || tp.DeadLetterTopic() != "acme.x.dlq" {
		t.Errorf("prefix not applied: %s, %s", s.Name(), tp.DeadLetterTopic())
	}
}
