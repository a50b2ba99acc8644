package topology_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/topology"
)

// revokeWatch holds the first produce to one topic until released and
// records the consumer group's members and joins.
type revokeWatch struct {
	topic string
	mu    sync.Mutex
	armed bool
	held  chan struct{} // closed when a produce is held
	free  chan struct{} // closed to release it
	// beats are the member ids seen heartbeating; joins the JoinGroups,
	// by member id, with their times.
	beats map[string]bool
	joins []join
}

type join struct {
	member string
	at     time.Time
}

func (w *revokeWatch) install(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		w.mu.Lock()
		hold := false
		for _, t := range r.(*kmsg.ProduceRequest).Topics {
			hold = hold || (w.armed && t.Topic == w.topic)
		}
		if hold {
			w.armed = false
			close(w.held)
		}
		w.mu.Unlock()
		if hold {
			c.SleepControl(func() { <-w.free })
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Heartbeat), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		w.mu.Lock()
		w.beats[r.(*kmsg.HeartbeatRequest).MemberID] = true
		w.mu.Unlock()
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.JoinGroup), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		w.mu.Lock()
		w.joins = append(w.joins, join{r.(*kmsg.JoinGroupRequest).MemberID, time.Now()})
		w.mu.Unlock()
		return nil, nil, false
	})
}

// F9 of the time review: a partition revoked while its changelog write is
// in flight. goka's partition processor does not return from its stop
// until every callback's emits (state changelog writes and group-table
// writes included) were acknowledged or failed (up to 60 s), and the
// member rejoins the group only after its stop: so the new owner, which
// gets the partition only once the old one rejoined, rebuilds from a
// changelog that holds the old owner's last write, and its own writes
// come after it. Here replica A's first window write of a record is held
// by the broker; replica B joins, so A's session ends; A rejoins only
// after the write was released, and every key's window, read back from
// the changelog as compaction keeps it, counts each of its three records
// once: the old owner's write did not land after the new owner's.
func TestRevokedPartitionsWritesLandBeforeTheNewOwners(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := topology.Kafka{Brokers: c.ListenAddrs()}
	clock := &manualClock{now: t0}
	topo, in, _, windows := stateTopoOf(2)
	w := &revokeWatch{topic: windows.Name(), held: make(chan struct{}), free: make(chan struct{}), beats: map[string]bool{}}
	w.install(c)
	opts := func() topology.RunnerOptions {
		return topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: clock, Logger: slog.New(slog.DiscardHandler),
			RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}}
	}
	keys := []string{"a", "b", "c", "d", "e", "f"}
	send := func(minute string) {
		var kv []string
		for _, key := range keys {
			kv = append(kv, key, minute)
		}
		produce(t, k, in.Name(), kv...)
	}

	a := runWith(t, topo, opts())
	send("0")
	waitCommitted(t, topo, k, "g")
	var aIDs map[string]bool
	waitFor(t, 30*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.beats) == 0 {
			return errors.New("no heartbeat of A yet")
		}
		aIDs = map[string]bool{}
		for id := range w.beats {
			aIDs[id] = true
		}
		return nil
	})

	w.mu.Lock()
	w.armed = true
	w.mu.Unlock()
	send("1")
	select {
	case <-w.held:
	case <-time.After(30 * time.Second):
		t.Fatal("no window write of A held")
	}
	topoB, _, _, _ := stateTopoOf(2)
	w.mu.Lock()
	before := len(w.joins) // A's own, of its start
	w.mu.Unlock()
	b := startRunner(t, topoB, opts())
	waitFor(t, 30*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, j := range w.joins[before:] {
			if !aIDs[j.member] {
				return nil
			}
		}
		return errors.New("B has not joined")
	})
	// A heartbeats every 3 s (sarama's default) and so learns of the
	// rebalance within 3 s; once its session ended goka waits 5 s and
	// rejoins. Without a wait for the held write, A would rejoin within
	// 8 s of B's join: the write is held 12 s, or until A rejoins.
	var early []join
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) && len(early) == 0 {
		time.Sleep(100 * time.Millisecond)
		w.mu.Lock()
		for _, j := range w.joins[before:] {
			if aIDs[j.member] {
				early = append(early, j)
			}
		}
		w.mu.Unlock()
	}
	released := time.Now()
	close(w.free)
	waitFor(t, 60*time.Second, b.r.Ready)
	send("2")
	waitCommitted(t, topo, k, "g")
	b.stop(t)
	a.stop(t)

	if len(early) > 0 {
		t.Errorf("A rejoined at %v while its window write was held (released at %v)", early, released)
	}
	w.mu.Lock()
	rejoined := false
	for _, j := range w.joins[before:] {
		rejoined = rejoined || aIDs[j.member]
	}
	w.mu.Unlock()
	if !rejoined {
		t.Errorf("A never rejoined after the rebalance (joins %v): the revocation was not exercised", w.joins)
	}
	view, stop := runWindowView(t, k, windows)
	defer stop()
	waitFor(t, 30*time.Second, func() error {
		if !view.Recovered() {
			return errors.New("view not recovered")
		}
		return nil
	})
	for _, key := range keys {
		ws, err := view.Fetch(key, at(0), at(60))
		if err != nil || len(ws) != 1 || ws[0].Value != 3 {
			t.Errorf("%s: windows %s, want 10:00-11:00 counting 3", key, fmt.Sprint(ws, err))
		}
	}
}
