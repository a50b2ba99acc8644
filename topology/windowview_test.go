package topology_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
)

// A WindowView starts empty: until it has read its changelog up to where
// it ended when Run started, Fetch answers ErrRecovering, not the partial
// (here: empty) windows it holds; then it answers them.
func TestWindowViewAnswersRecoveringUntilCaughtUp(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	topo, in, _, windows := stateTopo()
	r := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: &manualClock{now: t0}, Logger: slog.New(slog.DiscardHandler)})
	produce(t, k, in.Name(), "a", "0", "a", "20")
	waitCommitted(t, topo, k, "g")
	r.stop(t)

	// The view cannot read its changelog while the broker refuses.
	fault := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: windows.Name(), Err: kerr.NotLeaderForPartition, Count: -1})
	view, stop := runWindowView(t, k, windows)
	waitFor(t, 30*time.Second, func() error {
		ws, err := view.Fetch("a", at(0), at(180))
		if errors.Is(err, topology.ErrRecovering) && ws == nil {
			return nil
		}
		return errors.New("the recovering view answers " + errString(err))
	})
	if view.Recovered() {
		t.Error("Recovered before reading its changelog")
	}
	fault.Remove()
	waitFor(t, 30*time.Second, func() error {
		ws, err := view.Fetch("a", at(0), at(180))
		if err != nil {
			return err
		}
		if len(ws) != 1 || ws[0].Value != 2 {
			t.Fatalf("view of a: %+v, want 10:00 with 2", ws)
		}
		return nil
	})
	if !view.Recovered() {
		t.Error("answered but not Recovered")
	}
	stop()
}

// runWindowView runs a view of windows until stop, which checks that Run
// ended without error.
func runWindowView(t *testing.T, k topology.Kafka, windows topology.Windowed[int]) (view *topology.WindowView[int], stop func()) {
	t.Helper()
	view, err := topology.NewWindowView(windows, topology.ViewOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- view.Run(ctx) }()
	return view, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("view: %v", err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// A window view keeps following its changelog through errors the broker
// answers once it runs (a reset connection, a broker's own error): the
// consumer retries, the view goes on, and a server using it stays up. The
// fault test's views exited on "error while consuming ...: EOF".
func TestWindowViewOutlivesConsumeErrors(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}
	topo, in, _, windows := stateTopo()
	opts := topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Clock: &manualClock{now: t0}, Logger: slog.New(slog.DiscardHandler)}
	r := runWith(t, topo, opts)
	produce(t, k, in.Name(), "a", "0", "a", "20")
	waitCommitted(t, topo, k, "g")
	r.stop(t)

	view, stop := runWindowView(t, k, windows)
	defer stop()
	count := func(want int) func() error {
		return func() error {
			ws, err := view.Fetch("a", at(0), at(180))
			if err != nil {
				return err
			}
			if len(ws) != 1 || ws[0].Value != want {
				return fmt.Errorf("view of a: %+v, want 10:00 with %d", ws, want)
			}
			return nil
		}
	}
	waitFor(t, 30*time.Second, count(2))
	// The broker answers the view's fetches with an error a few times
	// (sarama hands it to the partition consumer's Errors and retries).
	fault := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: windows.Name(), Err: kerr.UnknownServerError, Count: 3})
	defer fault.Remove()
	r = runWith(t, topo, opts)
	produce(t, k, in.Name(), "a", "30")
	waitCommitted(t, topo, k, "g")
	r.stop(t)
	waitFor(t, 60*time.Second, count(3))
}

// A WindowView reads an aggregate's changelog as the group writes it (a
// group with an aggregate only writes the partition's stream time there,
// with its windows) and answers its windows.
func TestWindowViewReadsTheChangelog(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	topo := topology.New("wview")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test")).
		TimedBy(func(_ string, v string) (time.Time, bool) { m, err := strconv.Atoi(v); return at(m), err == nil })
	h := topology.Aggregate(topo.Processor("g"), in, topology.Tumbling(time.Hour).Grace(10*time.Minute),
		func() int { return 0 }, func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{})
	run := runWith(t, topo, topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	produce(t, k, in.Name(), "a", "0", "a", "5", "b", "75")
	waitCommitted(t, topo, k, "g")
	run.stop(t)
	v, err := topology.NewWindowView(h, topology.ViewOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	for !v.Recovered() {
		select {
		case err := <-done:
			t.Fatalf("the view stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the view did not recover")
		case <-time.After(20 * time.Millisecond):
		}
	}
	ws, err := v.Fetch("a", at(0), at(1))
	if err != nil || len(ws) != 1 || ws[0].Value != 2 || !ws[0].Closed {
		t.Errorf("a's window 10:00: %+v, %v", ws, err)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("the view: %v", err)
	}
}
