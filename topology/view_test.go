package topology_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
)

// A view that caught up keeps answering from its local copy when it loses
// its broker; it only reports that it lags.
func TestViewKeepsAnsweringWhileReconnecting(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := topology.Kafka{Brokers: b.Addrs()}
	c := newCounter(2)
	r, err := topology.NewRunner(build(t, c.t), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	waitFor(t, 60*time.Second, r.Ready)
	v, err := topology.NewView(c.table, topology.ViewOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Serving() {
		t.Fatal("a view serves before it caught up")
	}
	go func() { _ = v.Run(ctx) }()
	produce(t, k, c.in.Name(), "a", "5")
	waitFor(t, 60*time.Second, func() error {
		n, ok, err := v.Get("a")
		if err != nil || !ok || n != 5 || !v.Recovered() {
			return errors.New("view not caught up")
		}
		return nil
	})
	b.Close()
	waitFor(t, 60*time.Second, func() error {
		if v.Recovered() && v.Running() {
			return errors.New("the view has not noticed the broker is gone")
		}
		return nil
	})
	if !v.Serving() {
		t.Fatal("a view that caught up stopped serving when it lost its broker")
	}
	if n, ok, err := v.Get("a"); err != nil || !ok || n != 5 {
		t.Fatalf("Get while reconnecting = %d, %v, %v", n, ok, err)
	}
}
