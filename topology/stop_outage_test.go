package topology_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
)

// A runner stopped (SIGTERM) while the brokers fail it, here the group's
// coordinator refusing to let the member leave and every produce refused,
// stops cleanly: what it could not write or commit stays uncommitted for
// the next owner, as after a restart; the stop is no failure of the
// process. (A fault run saw a replica exit 1 on SIGTERM while a broker was
// down.)
func TestRunnerStoppedDuringAnOutageStopsCleanly(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	cp := newCopyTopo(1)
	run := startRunner(t, cp.t, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	produce(t, k, cp.in.Name(), "a", "v0")
	waitFor(t, 60*time.Second, func() error {
		if n := lagOf(t, cp.t, k, "copy"); n != 0 {
			return fmt.Errorf("lag %d", n)
		}
		return nil
	})
	leave := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.LeaveGroup}, Err: kerr.NotCoordinator, Count: -1, TopLevel: true})
	defer leave.Remove()
	refuse := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: cp.out.Name(), Err: kerr.NotEnoughReplicas, Count: -1})
	defer refuse.Remove()
	produce(t, k, cp.in.Name(), "b", "v1", "c", "v2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := refuse.Wait(ctx, 1); err != nil {
		t.Fatalf("no produce was refused: %v", err)
	}
	run.cancel()
	select {
	case err := <-run.done:
		if err != nil {
			t.Fatalf("a runner stopped during an outage failed: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the runner did not stop")
	}
}

// The lag of a group that never joined is its inputs' whole length, not an
// error: Kafka answers so, and the embedded broker's "group id does not
// exist" made a wait for a group's lag fail when it came before the
// group's first join.
func TestLagOfAGroupThatNeverJoined(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	cp := newCopyTopo(1)
	if _, err := cp.t.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	produce(t, k, cp.in.Name(), "a", "v0", "b", "v1")
	lags, err := build(t, cp.t).Lag(context.Background(), k, []string{"copy"})
	if err != nil {
		t.Fatalf("lag of a group that never joined: %v", err)
	}
	var n int64
	for _, l := range lags {
		n += l.Lag
		if l.Committed != -1 {
			t.Errorf("%s/%d: committed %d, want none (-1)", l.Topic, l.Partition, l.Committed)
		}
	}
	if n != 2 {
		t.Fatalf("lag %d, want the 2 records produced", n)
	}
}
