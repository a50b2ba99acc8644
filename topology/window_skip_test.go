package topology_test

import (
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// skips counts the runner's HookSkipped calls by reason.
type skips struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *skips) OnSkipped(_, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[reason]++
}

func (s *skips) count(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[reason]
}

// Under LateSkip a late record is counted by HookSkipped with reason
// "late" (and not dead-lettered); a record without time by "no_time".
func TestSkippedRecordsCounted(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	topo := topology.New("skips")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(_ string, v string) (time.Time, bool) {
			m, err := strconv.Atoi(v)
			return at(m), err == nil
		})
	p := topo.Processor("g")
	topology.Aggregate(p, in, topology.Tumbling(time.Hour), func() int { return 0 },
		func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{}, topology.Late(topology.LateSkip))
	hook := &skips{n: map[string]int{}}
	run := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Hooks: []topology.Hook{hook}})
	produce(t, k, in.Name(), "a", "0", "b", "90", "a", "10", "c", "none")
	waitCommitted(t, topo, k, "g")
	run.stop(t)
	if late, none := hook.count(topology.ReasonLate), hook.count(topology.ReasonNoTime); late != 1 || none != 1 {
		t.Errorf("skipped %d late and %d without time, want 1 and 1", late, none)
	}
	if dl := deadLetters(t, k, topo.DeadLetterTopic()); len(dl) != 0 {
		t.Errorf("dead letters %+v, want none", dl)
	}
}
