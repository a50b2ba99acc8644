package topology_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// Build finalizes the declaration once and seals it: a declaration made
// after it is reported and changes neither the plan nor what Describe and
// Validate read.
func TestBuildSealsTheDeclaration(t *testing.T) {
	tp := topology.New("sealed")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"))
	out := topology.NewStream(tp, "out", codecs.String{})
	p := tp.Processor("copy", topology.WithRetryTopics(topology.RetryPolicy{Delays: []time.Duration{time.Second}}))
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error { return emit.Emit(c, key, v) })
	plan, err := tp.Build()
	if err != nil {
		t.Fatal(err)
	}
	again, err := tp.Build()
	if err != nil || again != plan {
		t.Fatalf("a second Build = %p, %v; want the same plan", again, err)
	}
	topics, groups := plan.Topics(), plan.Groups()
	if !slices.Equal(groups, []string{"copy", "copy-retry"}) || !slices.Contains(topics, "copy-retry-1") {
		t.Fatalf("plan: groups %v, topics %v", groups, topics)
	}
	desc := plan.Describe()

	late := topology.NewStream(tp, "late", codecs.String{}, topology.External("test"))
	q := tp.Processor("late")
	topology.Consume(q, late, func(*topology.Context, string, string) error { return nil })
	topology.Consume(p, late, func(*topology.Context, string, string) error { return nil })

	if _, err := tp.Build(); !errors.Is(err, topology.ErrBuilt) {
		t.Errorf("Build after late declarations = %v, want ErrBuilt", err)
	}
	if err := tp.Validate(); !errors.Is(err, topology.ErrBuilt) {
		t.Errorf("Validate after late declarations = %v, want ErrBuilt", err)
	}
	var v *topology.ValidationError
	if errors.As(tp.Validate(), &v) && len(v.Problems) != 4 {
		t.Errorf("%d problems, want one per late declaration: %v", len(v.Problems), v)
	}
	if !slices.Equal(plan.Topics(), topics) || !slices.Equal(plan.Groups(), groups) || !slices.Equal(tp.Groups(), groups) {
		t.Errorf("late declarations changed the plan: groups %v, topics %v", plan.Groups(), plan.Topics())
	}
	if d := tp.Describe(); len(d.Groups) != len(desc.Groups) || len(d.Groups[0].Inputs) != 1 {
		t.Errorf("late declarations changed the description: %+v", d.Groups)
	}
}

// A resource is handed to the Runner, not to the declaration: a runner of
// a group that uses one is refused without it, and the group's callbacks
// read it from their context.
func TestResourcesComeFromTheRunner(t *testing.T) {
	type store struct{ name string }
	db := topology.NewResource[*store]("db")
	tp := topology.New("res")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"), topology.WithPartitions(1))
	out := topology.NewStream(tp, "out", codecs.String{})
	p := tp.Processor("use")
	topology.Uses(p, db)
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		s, ok := db.Get(c.Context())
		if !ok {
			return errors.New("no store")
		}
		return emit.Emit(c, key, s.name)
	})
	k := topology.Kafka{Brokers: startBroker(t)}
	if _, err := topology.NewRunner(build(t, tp), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir()}); !errors.Is(err, topology.ErrMissingResource) {
		t.Fatalf("a runner without the resource: %v, want ErrMissingResource", err)
	}
	run := runWith(t, tp, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Resources: []topology.Provided{topology.Provide(db, &store{name: "the store"})}})
	produce(t, k, in.Name(), "a", "x")
	if got := readAll(t, k, out.Name(), 1, 30*time.Second); string(got[0].Value) != "the store" {
		t.Errorf("emitted %q, want the provided store's name", got[0].Value)
	}
	run.stop(t)
	if _, ok := db.Get(context.Background()); ok {
		t.Error("a resource outside a runner's context")
	}
}

// A topology may be shared: Describe and Validate, which both build it, may
// run at once on an unbuilt topology (run with -race).
func TestConcurrentBuildIsSafe(t *testing.T) {
	tp := topology.New("shared")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"))
	p := tp.Processor("p", topology.WithRetryTopics(topology.RetryPolicy{}))
	topology.Consume(p, in, func(c *topology.Context, key, v string) error { return nil })
	errs := make(chan error, 8)
	groups := make(chan int, 8)
	for range 4 {
		go func() { errs <- tp.Validate() }()
		go func() { groups <- len(tp.Describe().Groups) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("Validate: %v", err)
		}
		if n := <-groups; n != 2 {
			t.Errorf("Describe shows %d groups, want 2 (the group and its retry companion)", n)
		}
	}
}

// The Runner and lag queries read the sealed plan: a runner is made from
// the plan Build returned, runs its groups, and the plan's Lag covers every
// input of them (loop and retry topics included) even after a late
// declaration, which Build reports but the plan ignores.
func TestRunnerAndLagReadThePlan(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	tp := topology.New("planlag")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"), topology.WithPartitions(2))
	p := tp.Processor("p")
	topology.Persist(p, codecs.String{}, topology.WithPartitions(2))
	loop := topology.Loop(p, codecs.String{}, func(*topology.Context, string, string) error { return nil })
	topology.Consume(p, in, func(c *topology.Context, key, v string) error { return loop.Send(c, key, v) })
	q := tp.Processor("q", topology.WithRetryTopics(topology.RetryPolicy{Delays: []time.Duration{time.Hour}}))
	topology.Consume(q, in, func(*topology.Context, string, string) error { return nil })
	plan, err := tp.Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.NewRunner(nil, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir()}); err == nil {
		t.Error("a runner without a plan")
	}
	if _, err := topology.NewRunner(plan, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Groups: []string{"nope"}}); !errors.Is(err, topology.ErrUnknownGroup) {
		t.Errorf("a runner of an unknown group: %v, want ErrUnknownGroup", err)
	}
	late := tp.Processor("late")
	topology.Consume(late, in, func(*topology.Context, string, string) error { return nil })
	if _, err := tp.Build(); !errors.Is(err, topology.ErrBuilt) {
		t.Fatalf("Build after a late declaration = %v, want ErrBuilt", err)
	}
	r, err := topology.NewRunner(plan, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Groups(); !slices.Equal(got, []string{"p", "q", "q-retry"}) {
		t.Fatalf("runner groups %v, want the plan's", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 60*time.Second, r.Ready)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lags, err := plan.Lag(context.Background(), k, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, l := range lags {
		got[l.Group+" "+l.Topic]++
		if l.Lag != 0 || l.End != 0 {
			t.Errorf("lag of an empty topic: %+v", l)
		}
	}
	want := map[string]int{"p in": 2, "p p-loop": 2, "q in": 2, "q-retry q-retry-1": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lag covers %v, want %v", got, want)
	}
	rl, err := r.Lag(context.Background())
	if err != nil || len(rl) != len(lags) {
		t.Errorf("Runner.Lag: %d partitions, %v; want the plan's %d", len(rl), err, len(lags))
	}
}
