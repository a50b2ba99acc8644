package topology

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/internal/poll"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// With hot standby, a process keeps a copy of the table partitions it does
// not own, which goka writes as it reads the table topic after their
// recovery: the changelog must let those writes through to the store, not
// hold them for acknowledgements that never come.
func TestChangelogHotStandbyCopiesReachTheStore(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := Kafka{Brokers: b.Addrs()}
	tp := New("t")
	in := NewStream(tp, "in", codecs.String{}, WithPartitions(4), External("test"))
	p := tp.Processor("copy")
	tb := Persist(p, codecs.String{}, WithPartitions(4))
	Consume(p, in, func(c *Context, _ string, v string) error { return tb.Set(c, v) })

	type run struct {
		r      *Runner
		cancel context.CancelFunc
		done   chan error
	}
	start := func(dir string) run {
		plan, err := tp.Build()
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRunner(plan, RunnerOptions{Kafka: k, DataDir: dir, HotStandby: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		x := run{r: r, cancel: cancel, done: make(chan error, 1)}
		go func() { x.done <- r.Run(ctx) }()
		waitUntil(t, r.Ready)
		return x
	}
	a := start(t.TempDir())
	dirB := t.TempDir()
	bRun := start(dirB)
	// B has standby partitions (A owns them).
	waitUntil(t, func() error {
		standby := 0
		for _, st := range processorOf(bRun.r).Stats().Group {
			if st.TableStats != nil && st.TableStats.RunMode != 0 { // not goka's runModeActive
				standby++
			}
		}
		if standby == 0 {
			return fmt.Errorf("B holds no standby partition")
		}
		return nil
	})

	prod, err := sarama.NewSyncProducer(k.Brokers, k.producerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const keys = 16
	for i := range keys {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: in.Name(), Key: sarama.StringEncoder(fmt.Sprint("k", i)), Value: sarama.StringEncoder("v")}); err != nil {
			t.Fatal(err)
		}
	}
	// B's copy of every partition, owned or standby, has every key.
	waitUntil(t, func() error {
		gp := processorOf(bRun.r)
		for i := range keys {
			if v, err := gp.Get(fmt.Sprint("k", i)); err != nil || v == nil {
				return fmt.Errorf("k%d: %v, %v", i, v, err)
			}
		}
		return nil
	})
	for _, x := range []run{bRun, a} {
		x.cancel()
		if err := <-x.done; err != nil {
			t.Fatal(err)
		}
	}
	stored := 0
	for part := range 4 {
		st, err := tablestore.Open(filepath.Join(dirB, "tables", "copy", fmt.Sprintf("copy-table.%d", part)), tablestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		it, err := st.Iterator()
		if err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			stored++
		}
		it.Release()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if stored != keys {
		t.Errorf("B's folder holds %d of %d keys", stored, keys)
	}
}

// processorOf returns the goka processor of a runner's only group.
func processorOf(r *Runner) *goka.Processor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[0]
}

// waitUntil waits up to a minute for cond.
func waitUntil(t *testing.T, cond func() error) {
	t.Helper()
	if err := poll.Until(context.Background(), time.Minute, 50*time.Millisecond, cond); err != nil {
		t.Fatal(err)
	}
}
