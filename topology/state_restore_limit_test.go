package topology_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/windowstore"
)

// A corrupt record in a state changelog fails every rebuild of its
// partition the same way: RestartLimit ends Run with it instead of the
// group restarting for ever.
func TestCorruptStateEndsRunAtRestartLimit(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	topo, in, out, _ := stateTopo()
	opts := topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: time.Millisecond, Max: 5 * time.Second}, RestartLimit: 3}
	r1 := runWith(t, topo, opts)
	produce(t, k, in.Name(), "a", "0")
	outputs(t, k, out.Name()) // the topics are made
	waitCommitted(t, topo, k, "g")
	r1.stop(t)
	p, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	ch := windowstore.Change{Key: []byte("\x01t\x00a"), Start: 0, End: 5, Value: []byte{9, 9, 9}}
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "g-timers", Key: sarama.ByteEncoder(windowstore.ChangeKey(ch)),
		Value: sarama.ByteEncoder(windowstore.ChangeValue(ch))})
	_ = p.Close()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := topo.Build()
	if err != nil {
		t.Fatal(err)
	}
	opts.DataDir = t.TempDir()
	r, err := topology.NewRunner(plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context()) }()
	select {
	case err := <-done:
		if !errors.Is(err, topology.ErrRestartLimit) || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("Run returned %v, want the restart limit on the corrupt state", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the runner still restarts the group after a minute")
	}
}
