package topologytest_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// A two-group topology: "parse" turns text into numbers (rejecting what is
// not a number), "sum" keeps a per-key running total in its table and
// emits it.
func twoGroups() (*topology.Topology, topology.Stream[string], topology.Stream[int], topology.Table[int]) {
	t := topology.New("drv")
	text := topology.NewStream(t, "text", codecs.String{}, topology.External("test"))
	nums := topology.NewStream(t, "numbers", codecs.JSON[int]{})
	sums := topology.NewStream(t, "sums", codecs.JSON[int]{})

	parse := t.Processor("parse")
	toNums := topology.Produce(parse, nums)
	topology.Consume(parse, text, func(c *topology.Context, key, v string) error {
		if v == "panic" {
			panic("parser bug")
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return topology.Reject("not_a_number", err)
		}
		return toNums.Emit(c, key, n)
	})

	sum := t.Processor("sum")
	total := topology.Persist(sum, codecs.JSON[int]{})
	toSums := topology.Produce(sum, sums)
	topology.Consume(sum, nums, func(c *topology.Context, key string, n int) error {
		s, _, err := total.Get(c)
		if err != nil {
			return err
		}
		if n < 0 {
			// Emit first, then fail: the emit must not leak out.
			if err := toSums.Emit(c, key, -1); err != nil {
				return err
			}
			return errors.New("negative")
		}
		s += n
		if err := total.Set(c, s); err != nil {
			return err
		}
		return toSums.Emit(c, key, s)
	})
	return t, text, sums, total
}

func TestDriverRunsWholeTopology(t *testing.T) {
	topo, text, sums, total := twoGroups()
	d := topologytest.New(t, topo)

	topologytest.Send(d, text, "a", "2")
	topologytest.Send(d, text, "a", "3")
	topologytest.Send(d, text, "b", "x")
	topologytest.Send(d, text, "b", "panic")
	topologytest.Send(d, text, "b", "-4")
	topologytest.Send(d, text, "b", "7")

	got := topologytest.Read(d, sums)
	want := []int{2, 5, 7}
	if len(got) != len(want) {
		t.Fatalf("sums = %+v, want values %v", got, want)
	}
	for i, r := range got {
		if r.Value != want[i] {
			t.Errorf("sum %d = %d, want %d", i, r.Value, want[i])
		}
	}
	if v, ok := topologytest.TableValue(d, total, "a"); !ok || v != 5 {
		t.Errorf("table[a] = %d, %v; want 5", v, ok)
	}
	if v, ok := topologytest.TableValue(d, total, "b"); !ok || v != 7 {
		t.Errorf("table[b] = %d, %v; want 7", v, ok)
	}
	dead := d.DeadLetters()
	reasons := map[string]string{}
	for _, e := range dead {
		reasons[e.Reason] = e.Stage
	}
	wantReasons := map[string]string{"not_a_number": "parse", topology.ReasonPanic: "parse", topology.ReasonCallbackError: "sum"}
	if len(dead) != 3 {
		t.Fatalf("dead letters = %+v", dead)
	}
	for r, stage := range wantReasons {
		if reasons[r] != stage {
			t.Errorf("dead letter %q from %q, want from %q (all: %v)", r, reasons[r], stage, reasons)
		}
	}
	// Read consumes: nothing new since.
	if again := topologytest.Read(d, sums); len(again) != 0 {
		t.Errorf("second read = %+v", again)
	}
}

func TestDriverUndecodableRecord(t *testing.T) {
	topo, _, _, _ := twoGroups()
	d := topologytest.New(t, topo, "sum")
	d.SendRaw("numbers", "k", []byte("{not json"))
	dead := d.DeadLetters()
	if len(dead) != 1 || dead[0].Reason != topology.ReasonDecodeError || string(dead[0].Value) != "{not json" {
		t.Fatalf("dead letters = %+v", dead)
	}
}
